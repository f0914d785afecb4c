"""A mismatch in the words of the spec: which machine, which transition the model expected,
the property it upholds and the SPEC.md section that states the rule.

Rules:
- One line per object that differs between what the system shows and a state the model
  allows: ``kernel_comm of comm 0: model expects open --frontend_lost[!persistent]-->
  closed (no_unobserved_default_comm, SPEC 'The disconnection policy'); the kernel
  stayed open``.
- The expected transition is the declared row from the object's state before the step
  (the last observation both agreed on) to the model's state; a change of several rows
  at once names the destination only. The property and section come from
  :data:`HINTS`, by machine and the model's state: a pointer for the reader, never a
  verdict (the verdict is the lockstep's).
"""

from __future__ import annotations

from typing import Any

from commspec.model.declaration import MachineSpec
from commspec.model.machines import (
    FRONTEND_COMM,
    KERNEL_COMM,
    PRESENCE,
    REQUEST,
    SESSION,
    STDIN_REQUEST,
)

from .projection import Observation

__all__ = ["HINTS", "explain"]

#: (machine, the model's state) -> (property, SPEC.md section) a reader should look at
HINTS: dict[tuple[str, str], tuple[str | None, str]] = {
    ("kernel_comm", "closed"): ("no_unobserved_default_comm", "The disconnection policy"),
    ("kernel_comm", "detached"): ("persistent_comm_survives", "The disconnection policy"),
    ("kernel_comm", "open"): ("adopted_comm_answerable", "Adoption and the detached bound"),
    ("request", "invalidated"): ("nothing_waits_forever", "Per-peer presence"),
    ("request", "resolved"): ("drained_reply_wins", "The drain rule"),
    ("request", "pending"): ("no_false_invalidation", "Per-peer presence"),
    ("stdin_request", "unreachable"): ("nothing_waits_forever",
                                       "Per-connection departure for stdin requests"),
    ("stdin_request", "replied"): ("drained_reply_wins", "The drain rule"),
    ("stdin_request", "pending"): ("no_false_invalidation",
                                   "Per-connection departure for stdin requests"),
    ("presence", "connected"): (None, "Kernel presence"),
    ("presence", "disconnected"): (None, "Kernel presence"),
}
#: the section for a machine no hint names
SECTIONS = {"kernel_comm": "Kernel-side comm", "frontend_comm": "Frontend-side comm",
            "request": "Comm RPC request", "stdin_request": "Stdin request",
            "session": "Frontend session", "presence": "Kernel presence"}


def explain(before: Observation | None, system: Observation, model: Observation) -> list[str]:
    """One line per object where ``system`` differs from the model's ``model``;
    ``before`` is the observation of the step before (None: unknown)."""
    lines: list[str] = []
    for i, (a, b) in enumerate(zip(system.kernel_comms, model.kernel_comms, strict=True)):
        if a != b:
            prev = before.kernel_comms[i] if before else None
            lines.append(_line(f"kernel_comm of comm {i}", (KERNEL_COMM,), prev, a, b,
                               "the kernel"))
    for r, (ra, rb) in enumerate(zip(system.requests, model.requests, strict=True)):
        if ra != rb:
            before_r = before.requests[r] if before else None
            lines.append(_line(f"request {r}", (REQUEST, STDIN_REQUEST),
                               None if before_r is None else str(before_r),
                               str(ra), str(rb), "it"))
    if system.presence != model.presence:
        lines.append(_line("presence", (PRESENCE,), before.presence if before else None,
                           system.presence, model.presence, "the kernel"))
    if system.subscribers != model.subscribers:
        lines.append(f"subscribers: model expects {model.subscribers}, the kernel counts "
                     f"{system.subscribers} (SPEC 'Per-peer presence')")
    if system.kernel_late != model.kernel_late:
        lines.append(f"late replies at the kernel: model expects {model.kernel_late}, the "
                     f"kernel counted {system.kernel_late} (reply_only_while_pending, SPEC "
                     "'The late-reply race')")
    lines.extend(_frontend_lines(before, system, model))
    return lines


def _frontend_lines(before: Observation | None, system: Observation,
                    model: Observation) -> list[str]:
    lines: list[str] = []
    for f, (a, b) in enumerate(zip(system.sessions, model.sessions, strict=True)):
        if a != b:
            prev = before.sessions[f] if before else None
            lines.append(_line(f"session of frontend {f}", (SESSION,), prev, a, b,
                               "the frontend"))
    for f, (sys_comms, model_comms) in enumerate(zip(system.frontend_comms,
                                                     model.frontend_comms, strict=True)):
        if sys_comms is None or model_comms is None:
            continue  # a dead frontend: its session line says so
        for i, (a, b) in enumerate(zip(sys_comms, model_comms, strict=True)):
            if a != b:
                old = before.frontend_comms[f] if before else None
                prev = old[i] if old is not None else None
                lines.append(_line(f"frontend_comm of comm {i} at frontend {f}",
                                   (FRONTEND_COMM,), prev, a, b, "the frontend"))
    for f, (la, lb) in enumerate(zip(system.frontend_late, model.frontend_late, strict=True)):
        if la != lb:
            lines.append(f"late replies at frontend {f}: model expects {lb}, it counted {la} "
                         "(reply_only_while_pending, SPEC 'The late-reply race')")
    return lines


def _line(what: str, machines: tuple[MachineSpec[Any, Any], ...], prev: str | None, system: str,
          model: str, who: str) -> str:
    machine, expected = _expected(machines, prev, model)
    prop, section = HINTS.get((machine, model), (None, SECTIONS.get(machine, "")))
    where = ", ".join(x for x in (prop, f"SPEC '{section}'" if section else None) if x)
    did = f"stayed {system}" if system == prev else f"went to {system}"
    return f"{what}: model expects {expected} ({where}); {who} {did}"


def _expected(machines: tuple[MachineSpec[Any, Any], ...], prev: str | None, model: str
              ) -> tuple[str, str]:
    """The machine and the row the model took from ``prev`` to ``model``, as SPEC.md
    writes it (``open --frontend_lost[!persistent]--> closed``)."""
    if prev == model:
        return machines[0].name, f"it to stay {model}"
    for spec in machines:
        rows = [t for t in spec.transitions
                if t.source.value == prev and t.dest.value == model]
        if rows:
            return spec.name, " or ".join(
                f"{prev} --{t.event.value}{_guard(t.guard_label)}--> {model}" for t in rows)
    owner = next((s for s in machines if model in {st.value for st in s.states}), machines[0])
    return owner.name, f"{prev or '?'} ... --> {model}"


def _guard(label: str | None) -> str:
    if not label:
        return ""
    return label if label.startswith("[") else f"[{label}]"
