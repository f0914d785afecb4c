"""Per-language snippets: how a kernel under test gets the targets the checks talk to.

A profile is what jupyter_kernel_test calls a kernel's snippets. ``setup`` is code the
kernel executes (one execute_request) before a check that needs the targets; it
registers ``commspec.echo`` (default) and ``commspec.echo.persistent`` whose
JSON-RPC methods are those of the reference kernel's demo target (SPEC, "The demo
target"): ``echo`` answers its params, ``call_frontend`` asks the comm's frontend
``{method, params}`` and answers with what came back. ``stdin_code`` is code that
reads a line from stdin (an input_request to the frontend that executed it).

Profiles: ``commspec`` (commspec's own targets), ``python`` (tested on ipykernel 7.4),
``r`` (ark) and ``julia`` (IJulia), written from their public sources and untested
here (see each), and ``none``.

Capabilities say what a profile gives the checks:
- ``targets``: the two targets, with ``echo``;
- ``kernel_request``: ``call_frontend`` (a kernel-to-frontend request);
- ``stdin``: a way to make the kernel ask a frontend for input: ``stdin_code``, or,
  for a kernel with commspec's own targets, the ``ask_stdin`` method;
- ``ark_rpc``: ``ask_stdin`` with ``{method, params}`` sends ark's ``rpc_request``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAPABILITIES", "PROFILES", "Profile"]

CAPABILITIES = frozenset({"targets", "kernel_request", "stdin", "ark_rpc"})


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    setup: str | None = None
    stdin_code: str | None = None
    capabilities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise ValueError(f"profile {self.name}: unknown capabilities {sorted(unknown)}")


# The Python targets, on the `comm` package (ipykernel >= 6, xeus-python): the reply
# goes out parented to the request, as SPEC.md requires.
_PYTHON_SETUP = r'''
def _commspec_conform_setup():
    import comm as _comm_pkg

    def target(comm, open_msg):
        asked = {}  # our request id -> the request message we are answering

        def answer(request, payload):
            comm.kernel.session.send(comm.kernel.iopub_socket, "comm_msg",
                                     {"comm_id": comm.comm_id, "data": payload},
                                     parent=request, ident=comm.topic)

        @comm.on_msg
        def on_msg(msg):
            data = msg["content"].get("data") or {}
            if "result" in data or "error" in data:
                request = asked.pop(data.get("id"), None)
                if request is not None:
                    answer(request, {"jsonrpc": "2.0",
                                     "id": request["content"]["data"]["id"],
                                     **({"result": data["result"]} if "result" in data
                                        else {"error": data["error"]})})
                return
            method, rid = data.get("method"), data.get("id")
            if rid is None:
                return
            if method == "echo":
                answer(msg, {"jsonrpc": "2.0", "id": rid, "result": data.get("params")})
            elif method == "call_frontend":
                params = data.get("params") or {}
                ours = "conform-" + str(len(asked)) + "-" + str(rid)
                asked[ours] = msg
                comm.send({"jsonrpc": "2.0", "id": ours, "method": params.get("method"),
                           "params": params.get("params")})
            else:
                answer(msg, {"jsonrpc": "2.0", "id": rid,
                             "error": {"code": -32601, "message": "method not found"}})

    manager = _comm_pkg.get_comm_manager()
    manager.register_target("commspec.echo", target)
    manager.register_target("commspec.echo.persistent", target)


_commspec_conform_setup()
'''

# ark (Positron's R kernel). UNTESTED: no R on the machine this was written on. ark's
# comm targets (positron.ui, positron.plot, ...) are Rust handlers; its public R
# modules register none from R, so the demo targets cannot be given and the comm
# checks are N/A. Its input_request comes from readline() while code runs (ark's
# rpc_request comes from frontend-method calls through its UI comm, which a check
# would first have to open as Positron does: not done, so no "ark_rpc" here).
_R_STDIN = 'invisible(readline("commspec conform: "))'

# IJulia. UNTESTED: no Julia on the machine this was written on; written against
# IJulia's CommManager (comm_manager.jl: a target is a method of register_comm for
# Comm{Symbol(target)}; send_comm parents to the current execute_request, so a reply
# is built with msg_comm(comm, request, ...) to be parented to its request) and
# send_ipython(IJulia.publish[], msg), which newer IJulia versions may have changed.
_JULIA_SETUP = r"""
module CommspecConform
import IJulia
using IJulia.CommManager: Comm, msg_comm, send_comm

const asked = Dict{String,Any}()  # our request id -> the request we are answering

answer(comm, request, payload) =
    IJulia.send_ipython(IJulia.publish[], msg_comm(comm, request, "comm_msg", payload))

function serve(comm)
    comm.on_msg = function (msg)
        data = get(msg.content, "data", Dict())
        if haskey(data, "result") || haskey(data, "error")
            request = pop!(asked, string(get(data, "id", "")), nothing)
            request === nothing && return
            out = Dict{String,Any}("jsonrpc" => "2.0", "id" => request.content["data"]["id"])
            key = haskey(data, "result") ? "result" : "error"
            out[key] = data[key]
            answer(comm, request, out)
            return
        end
        rid = get(data, "id", nothing)
        rid === nothing && return
        method = get(data, "method", nothing)
        if method == "echo"
            answer(comm, msg, Dict("jsonrpc" => "2.0", "id" => rid,
                                   "result" => get(data, "params", nothing)))
        elseif method == "call_frontend"
            params = something(get(data, "params", nothing), Dict())
            ours = string("conform-", length(asked), "-", rid)
            asked[ours] = msg
            send_comm(comm, Dict("jsonrpc" => "2.0", "id" => ours,
                                 "method" => get(params, "method", nothing),
                                 "params" => get(params, "params", nothing)))
        else
            answer(comm, msg, Dict("jsonrpc" => "2.0", "id" => rid, "error" =>
                                   Dict("code" => -32601, "message" => "method not found")))
        end
    end
end
end

IJulia.CommManager.register_comm(
    comm::IJulia.CommManager.Comm{Symbol("commspec.echo")}, msg) = CommspecConform.serve(comm)
IJulia.CommManager.register_comm(
    comm::IJulia.CommManager.Comm{Symbol("commspec.echo.persistent")}, msg) =
    CommspecConform.serve(comm)
nothing
"""

PROFILES: dict[str, Profile] = {
    profile.name: profile for profile in (
        Profile("commspec", "a kernel with commspec's own demo targets: no code is run",
                capabilities=CAPABILITIES),
        Profile("python", "IPython kernels (ipykernel, xeus-python): targets on the `comm` "
                "package, stdin through input()", setup=_PYTHON_SETUP,
                stdin_code="input('commspec conform: ')",
                capabilities=frozenset({"targets", "kernel_request", "stdin"})),
        Profile("r", "ark, Positron's R kernel (UNTESTED): stdin through readline(); no "
                "targets (ark registers comm targets in Rust only)", stdin_code=_R_STDIN,
                capabilities=frozenset({"stdin"})),
        Profile("julia", "IJulia (UNTESTED): targets through IJulia.CommManager, stdin "
                "through readline()", setup=_JULIA_SETUP, stdin_code="readline()",
                capabilities=frozenset({"targets", "kernel_request", "stdin"})),
        Profile("none", "no code: only the checks that need none", capabilities=frozenset()),
    )
}
