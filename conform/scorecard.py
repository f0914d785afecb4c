"""The verdicts as people and CI read them: a table, JSON, JUnit XML, markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from .registry import Outcome, Verdict

__all__ = ["as_json", "as_junit", "as_markdown", "as_text", "exit_code", "summary"]


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 only if every applicable check passed (and at least one applied)."""
    applied = [v for v in verdicts if v.outcome is not Outcome.NA]
    return 0 if applied and all(v.outcome is Outcome.PASS for v in applied) else 1


def summary(verdicts: Sequence[Verdict]) -> str:
    passed = sum(v.outcome is Outcome.PASS for v in verdicts)
    applied = sum(v.outcome is not Outcome.NA for v in verdicts)
    return f"{passed} of {applied} applicable checks pass ({len(verdicts) - applied} N/A)"


def _detail(verdict: Verdict) -> str:
    return verdict.figure if verdict.outcome is Outcome.PASS else verdict.why


def as_text(verdicts: Sequence[Verdict], evidence_lines: int = 12) -> str:
    rows = [(v.outcome.value, v.check.name, _detail(v), v.check.rule) for v in verdicts]
    widths = [max(len(r[i]) for r in rows) if rows else 0 for i in range(2)]
    lines = []
    for (outcome, name, detail, rule), verdict in zip(rows, verdicts, strict=True):
        lines.append(f"{outcome:<{widths[0]}}  {name:<{widths[1]}}  {detail}")
        lines.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  holds: SPEC \"{rule}\", "
                     f"{verdict.check.prop}")
        if verdict.outcome is Outcome.FAIL:
            for line in verdict.evidence[-evidence_lines:]:
                lines.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  | {line}")
    lines.append(summary(verdicts))
    return "\n".join(lines)


def _record(verdict: Verdict) -> dict[str, Any]:
    return {"check": verdict.check.name, "title": verdict.check.title,
            "outcome": verdict.outcome.value, "rule": verdict.check.rule,
            "property": verdict.check.prop, "figure": verdict.figure, "why": verdict.why,
            "evidence": verdict.evidence, "seconds": round(verdict.seconds, 3)}


def as_json(verdicts: Sequence[Verdict], about: dict[str, Any]) -> str:
    return json.dumps({**about, "summary": summary(verdicts),
                       "checks": [_record(v) for v in verdicts]}, indent=2)


def as_junit(verdicts: Sequence[Verdict], suite: str) -> str:
    root = ElementTree.Element(
        "testsuite", name=suite, tests=str(len(verdicts)),
        failures=str(sum(v.outcome is Outcome.FAIL for v in verdicts)),
        skipped=str(sum(v.outcome is Outcome.NA for v in verdicts)))
    for verdict in verdicts:
        case = ElementTree.SubElement(root, "testcase", classname="commspec.conform",
                                      name=verdict.check.name, time=f"{verdict.seconds:.3f}")
        if verdict.outcome is Outcome.FAIL:
            failure = ElementTree.SubElement(case, "failure", message=verdict.why)
            failure.text = "\n".join(verdict.evidence)
        elif verdict.outcome is Outcome.NA:
            ElementTree.SubElement(case, "skipped", message=verdict.why)
    return ElementTree.tostring(root, encoding="unicode")


def as_markdown(columns: dict[str, Sequence[Verdict]]) -> str:
    """One row per check, one column per kernel (its verdict and figure or reason)."""
    names = list(columns)
    first = next(iter(columns.values()), [])
    header = ["check", "SPEC rule", *names]
    rows = []
    for i, verdict in enumerate(first):
        cells = [f"`{verdict.check.name}`", verdict.check.rule]
        for name in names:
            v = columns[name][i]
            detail = " ".join(_detail(v).split()).replace("|", "/")  # one table row
            cells.append(f"{v.outcome.value}" + (f": {detail}" if detail else ""))
        rows.append(cells)
    totals = ["**total**", "", *(summary(columns[n]) for n in names)]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in [*rows, totals]]
    return "\n".join(out)
