"""SPEC.md's "On the wire" tables agree with the declared machines.

Each row names a state and, unless it fires nothing ("—"), an event: that (state,
event) must be a declared transition of the table's machine, and every declared
transition must have a row (a terminal state's self-loops may share one "any ended
state" row). The check is shown failing on a table with a row the machine lacks and
on one that leaves a transition out.
"""

from __future__ import annotations

import re
from pathlib import Path

from commspec.model.declaration import MachineSpec
from commspec.model.machines import FRONTEND_COMM, KERNEL_COMM, REQUEST, STDIN_REQUEST

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"
MACHINES = {m.name: m for m in (KERNEL_COMM, FRONTEND_COMM, REQUEST, STDIN_REQUEST)}
ANY_ENDED = "any ended state"


def wire_tables(text: str) -> dict[str, list[tuple[str, str]]]:
    """Per machine, the (state, event) of each row ("" for no event)."""
    section = text[text.index("## On the wire"):]
    section = section[:section.index("\n## ", 1)]
    tables: dict[str, list[tuple[str, str]]] = {}
    for part in section.split("\n### ")[1:]:
        name = re.match(r"`(\w+)`", part)
        assert name is not None, part[:60]
        rows = tables.setdefault(name.group(1), [])
        for line in part.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 4 or cells[0] in ("State", "---"):
                continue
            state = cells[0] if cells[0].startswith(ANY_ENDED) else cells[0].strip("`")
            event = cells[2].strip("`") if cells[2] != "—" else ""
            rows.append((state, event))
    return tables


def disagreements(tables: dict[str, list[tuple[str, str]]]) -> list[str]:
    out = []
    for name, rows in tables.items():
        machine: MachineSpec = MACHINES[name]  # type: ignore[type-arg]
        declared = {(t.source.value, t.event.value) for t in machine.transitions}
        terminal = {s.value for s in machine.terminal}
        covered = set()
        for state, event in rows:
            if not event:
                continue
            sources = {state}
            if state.startswith(ANY_ENDED):
                # "any ended state but `a`, `b`": the terminal states less those named
                sources = terminal - set(re.findall(r"`(\w+)`", state[len(ANY_ENDED):]))
            pairs = {(s, event) for s in sources}
            if not pairs <= declared:
                out.append(f"{name}: {state} --{event}--> is not declared")
            covered |= pairs
        out.extend(f"{name}: no row for {s} --{e}-->" for s, e in sorted(declared - covered))
    missing = set(MACHINES) - set(tables)
    out.extend(f"no table for {m}" for m in sorted(missing))
    return out


def test_the_wire_tables_are_the_declared_machines() -> None:
    assert disagreements(wire_tables(SPEC.read_text())) == []


def test_the_check_fails_on_a_row_the_machine_lacks_and_on_a_missing_row() -> None:
    text = SPEC.read_text()
    bogus = text.replace(
        "| `closed` | anything for its id | — |",
        "| `closed` | anything for its id | `frontend_back` |", 1)
    assert bogus != text
    assert "kernel_comm: closed --frontend_back--> is not declared" in disagreements(
        wire_tables(bogus))
    row = next(line for line in text.splitlines()
               if line.startswith("| `detached` |") and "| `evicted` | publishes" in line)
    assert "kernel_comm: no row for detached --evicted-->" in disagreements(
        wire_tables(text.replace(row + "\n", "", 1)))
