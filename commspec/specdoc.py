"""The generated parts of SPEC.md: tables rendered from the model, kept in sync in place.

SPEC.md is hand-written prose with GENERATED blocks between HTML comment markers::

    <!-- BEGIN GENERATED machine:kernel_comm -->
    ...rendered from commspec.model, never edited by hand...
    <!-- END GENERATED -->

``update`` rewrites the inside of every block and leaves everything else byte for
byte. Every machine, the properties, the trace format and the error codes must each have exactly
one block: a machine added to the model cannot go undocumented silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any

from commspec.model import MACHINES, MachineSpec, TraceEvent
from commspec.model.errors import CommspecError
from commspec.model.messages import ERROR_CODES, ErrorCode
from commspec.model.properties import PROPERTIES, Property

BEGIN = re.compile(r"^<!-- BEGIN GENERATED (?P<key>[A-Za-z0-9_:.-]+) -->$")
END = "<!-- END GENERATED -->"

#: What each trace field means. Keyed by TraceEvent's field names; a field added
#: to TraceEvent without a line here makes rendering fail, so SPEC.md cannot lag.
TRACE_FIELD_MEANING: dict[str, str] = {
    "endpoint": "Which endpoint took the transition (e.g. `kernel`, or a frontend's name).",
    "machine": "The machine's name (`kernel_comm`, `request`...), as each machine's "
    "section gives it.",
    "object": "The id of the object that moved (comm id, request msg_id...), unique "
    "within its endpoint and machine.",
    "source": "The state before the transition.",
    "event": "The event that was fired.",
    "dest": "The state after the transition (equal to `from` for a self-loop such as a "
    "late reply).",
    "time": "`time.monotonic()` of the emitting process, in seconds: orders one "
    "endpoint's events; not comparable across processes.",
    "msg_id": "The Jupyter `msg_id` of the message that caused the transition, or null.",
}

_JSON_TYPES: dict[str, str] = {
    "str": "string",
    "float": "number",
    "int": "number",
    "bool": "boolean",
    "str | None": "string or null",
}


class SpecDocError(CommspecError):
    """SPEC.md's generated blocks are malformed, unknown, duplicated or missing."""


# -- rendering -------------------------------------------------------------


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _code(name: str) -> str:
    return f"`{name}`"


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def render_machine(spec: MachineSpec[Any, Any]) -> str:
    facts: list[Enum] = list(spec.facts)
    lines = [
        f"![{spec.name} state diagram](diagrams/{spec.name}.svg)",
        "",
        f"**{spec.title}** (`{spec.name}`): {spec.summary}",
        "",
        "Guard facts: "
        + (", ".join(_code(f.value) for f in facts) if facts else "none")
        + ". Terminal states: "
        + (", ".join(_code(s.value) for s in spec.states if s in spec.terminal) or "none")
        + ".",
        "",
    ]
    lines += _table(
        ["State", "Initial", "Terminal"],
        (
            [_code(s.value), _yes(s == spec.initial), _yes(s in spec.terminal)]
            for s in spec.states
        ),
    )
    lines.append("")
    lines += _table(
        ["From", "Event", "Guard", "To", "Why"],
        (
            [_code(t.source.value), _code(t.event.value),
             _code(t.guard_label) if t.guard_label else "",
             _code(t.dest.value), t.why]
            for t in spec.transitions
        ),
    )
    return "\n".join(lines)


def render_properties(properties: Iterable[Property] = PROPERTIES) -> str:
    return "\n".join(
        _table(
            ["Name", "Kind", "Statement", "Why"],
            ([_code(p.name), p.kind.value, p.statement, p.why] for p in properties),
        )
    )


def _json_keys(sample: TraceEvent) -> dict[str, str]:
    """TraceEvent field name -> the key ``to_json`` writes it under.

    Read from ``to_json`` itself (each field of ``sample`` has a distinct value), so
    a renamed key shows up in SPEC.md instead of being restated here.
    """
    written: dict[str, Any] = json.loads(sample.to_json())
    out: dict[str, str] = {}
    for f in dataclasses.fields(TraceEvent):
        keys = [k for k, v in written.items() if v == getattr(sample, f.name)]
        if len(keys) != 1:
            raise SpecDocError(f"TraceEvent.to_json does not write field {f.name!r} once")
        out[f.name] = keys[0]
    if len(out) != len(written):
        raise SpecDocError("TraceEvent.to_json writes keys that are not fields")
    return out


def render_trace_event() -> str:
    sample = TraceEvent(
        endpoint="kernel", machine="request", object="k:3f2a9c",
        source="pending", event="peer_lost", dest="invalidated",
        time=12345.678901, msg_id="3f2a9c",
    )
    keys = _json_keys(sample)
    rows: list[list[str]] = []
    for f in dataclasses.fields(TraceEvent):
        if f.name not in TRACE_FIELD_MEANING:
            raise SpecDocError(f"TraceEvent.{f.name} has no meaning in TRACE_FIELD_MEANING")
        kind = _JSON_TYPES.get(str(f.type))
        if kind is None:
            raise SpecDocError(f"TraceEvent.{f.name}: no JSON type for {f.type!r}")
        rows.append([_code(keys[f.name]), kind, TRACE_FIELD_MEANING[f.name]])
    lines = ["One JSON object per line, for example:", "", "```json", sample.to_json(), "```", ""]
    lines += _table(["Key", "JSON type", "Meaning"], rows)
    return "\n".join(lines)


def render_error_codes(codes: Iterable[ErrorCode] = ERROR_CODES) -> str:
    return "\n".join(
        _table(
            ["Code", "Name", "Failure outcome", "Meaning"],
            ([str(e.code), e.name, _code(e.outcome.value) if e.outcome else "", e.meaning]
             for e in codes),
        )
    )


def renderers() -> dict[str, Callable[[], str]]:
    """Every block SPEC.md must contain, by key, with the function that renders it."""
    out: dict[str, Callable[[], str]] = {
        f"machine:{m.name}": functools.partial(render_machine, m) for m in MACHINES
    }
    out["properties"] = render_properties
    out["trace-event"] = render_trace_event
    out["error-codes"] = render_error_codes
    return out


# -- rewriting -------------------------------------------------------------


def update(text: str) -> str:
    """``text`` with every generated block re-rendered; everything else unchanged."""
    wanted = renderers()
    out: list[str] = []
    seen: set[str] = set()
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        m = BEGIN.match(line.rstrip("\r\n"))
        if m is None:
            if line.rstrip("\r\n") == END:
                raise SpecDocError(f"line {i}: END GENERATED without a BEGIN")
            continue
        key = m["key"]
        if key not in wanted:
            raise SpecDocError(f"line {i}: unknown generated block {key!r}")
        if key in seen:
            raise SpecDocError(f"line {i}: generated block {key!r} appears twice")
        seen.add(key)
        start = i
        while i < len(lines) and lines[i].rstrip("\r\n") != END:
            if BEGIN.match(lines[i].rstrip("\r\n")):
                raise SpecDocError(f"line {i + 1}: BEGIN inside block {key!r} (line {start})")
            i += 1
        if i == len(lines):
            raise SpecDocError(f"line {start}: block {key!r} has no {END}")
        out.append(wanted[key]() + "\n")
        out.append(lines[i])
        i += 1
    missing = [k for k in wanted if k not in seen]
    if missing:
        raise SpecDocError(
            "missing generated blocks: "
            + ", ".join(missing)
            + f" (add '<!-- BEGIN GENERATED KEY -->' and '{END}' lines where each belongs)"
        )
    return "".join(out)


def diff(path: Path) -> str:
    """A unified diff from ``path`` to its regenerated text; empty when up to date."""
    old = path.read_text(encoding="utf-8")
    new = update(old)
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (as is)",
            tofile=f"{path} (generated from the model)",
        )
    )


def rewrite(path: Path) -> bool:
    """Regenerate ``path`` in place; return whether anything changed."""
    old = path.read_text(encoding="utf-8")
    new = update(old)
    if new == old:
        return False
    path.write_text(new, encoding="utf-8")
    return True
