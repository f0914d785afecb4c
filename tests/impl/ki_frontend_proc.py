"""A frontend in its own process, for tests that SIGKILL or SIGSTOP it.

Usage: ki_frontend_proc.py CONNECTION_FILE SESSION_ID [--open TARGET]... [--ask-stdin N]

It connects as a commspec peer (subscribed to b"" and its presence topic),
waits for the welcome, opens one comm per --open (waiting for each open's idle,
so the kernel has handled it), optionally sends an ``ask_stdin`` request on comm
N and waits until the kernel's input_request arrives, then prints one JSON line
``{"ready": true, "comms": [...]}`` and blocks reading its stdin until killed.
"""

from __future__ import annotations

import argparse
import json
import sys

from ki_peers import RawFrontend


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("connection_file")
    parser.add_argument("session_id")
    parser.add_argument("--open", action="append", default=[])
    parser.add_argument("--ask-stdin", type=int, default=None)
    args = parser.parse_args()

    frontend = RawFrontend.from_file(args.connection_file, session_id=args.session_id)
    frontend.wait_welcome()
    comms = []
    for target in args.open:
        comm_id = frontend.open_comm(target)
        frontend.wait_iopub(
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_type") == "comm_open", what="comm_open idle")
        comms.append(comm_id)
    stdin_request = None
    if args.ask_stdin is not None:
        frontend.request(comms[args.ask_stdin], "ask_stdin", {"prompt": "name?"})
        msg = frontend.recv(frontend.stdin, 10.0)
        if msg is None:
            raise SystemExit("no input_request arrived")
        stdin_request = msg["header"]["msg_id"]
    print(json.dumps({"ready": True, "comms": comms, "stdin_request": stdin_request}),
          flush=True)
    sys.stdin.read()  # until the test kills us (or closes our stdin)
    frontend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
