"""What a conformance check is, and what it says about a kernel.

Rules:
- A check holds a kernel to one wire-observable rule of SPEC.md: it names the SPEC
  section and the system model's property it stands for, and what the kernel must be
  able to do for it to apply (``needs``: a target the profile registers, a way to ask
  for stdin...). A check whose needs the profile cannot meet is N/A, never a FAIL.
- ``run`` talks to a kernel that was started for it alone, through ``CheckContext``;
  it returns a ``Finding`` (its figure and the evidence) or raises ``Failed`` with the
  evidence, or ``NotApplicable``. Anything else it raises is a FAIL of the check
  (the kernel did something the check could not make sense of), with the exception as
  evidence: a crash of the harness is never a PASS.
- Every wait inside a check is bounded; the runner bounds the whole check too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import CheckContext

__all__ = [
    "CHECKS",
    "Check",
    "Failed",
    "Finding",
    "NotApplicable",
    "Outcome",
    "Verdict",
    "check",
]


class Outcome(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NA = "N/A"


@dataclass
class Finding:
    """What a passing check measured: a figure for the scorecard, and evidence."""

    figure: str = ""
    evidence: list[str] = field(default_factory=list)


class Failed(Exception):
    """The kernel broke the check's rule; ``evidence`` says what was sent and what came
    back (or did not)."""

    def __init__(self, why: str, evidence: list[str] | None = None, figure: str = "") -> None:
        super().__init__(why)
        self.why = why
        self.evidence = evidence or []
        self.figure = figure


class NotApplicable(Exception):
    """The check does not apply to this kernel (the reason says why)."""


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    #: the SPEC.md section the rule is written in
    rule: str
    #: the system model's property the rule stands for (SPEC, "Properties")
    prop: str
    run: Callable[[CheckContext], Finding]
    #: capabilities the profile must provide (profiles.CAPABILITIES)
    needs: frozenset[str] = frozenset()


@dataclass
class Verdict:
    check: Check
    outcome: Outcome
    figure: str = ""
    why: str = ""
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0


#: every check, in the order the scorecard lists them
CHECKS: dict[str, Check] = {}


def check(name: str, title: str, *, rule: str, prop: str,
          needs: frozenset[str] | set[str] = frozenset()
          ) -> Callable[[Callable[[CheckContext], Finding]], Callable[[CheckContext], Finding]]:
    """Register a check function under ``name`` (its order is the import order)."""
    def register(run: Callable[[CheckContext], Finding]) -> Callable[[CheckContext], Finding]:
        if name in CHECKS:
            raise ValueError(f"check {name!r} is registered twice")
        CHECKS[name] = Check(name, title, rule, prop, run, frozenset(needs))
        return run
    return register
