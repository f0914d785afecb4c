"""Run the checks against a kernel: one fresh kernel per check, one verdict each."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable

from .context import CheckContext, Timeouts
from .kernel import KernelSource, KernelStartFailed, running_kernel
from .profiles import Profile
from .registry import CHECKS, Check, Failed, NotApplicable, Outcome, Verdict

__all__ = ["run_checks", "select"]


def select(only: Iterable[str] | None) -> list[Check]:
    """The checks named (all of them for None), in the scorecard's order; an unknown
    name is a ValueError listing the known ones."""
    from . import checks  # noqa: F401 -- registers them

    if only is None:
        return list(CHECKS.values())
    names = list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return [c for c in CHECKS.values() if c.name in names]


def run_one(check: Check, source: KernelSource, profile: Profile,
            timeouts: Timeouts) -> Verdict:
    missing = check.needs - profile.capabilities
    if missing:
        return Verdict(check, Outcome.NA,
                       why=f"profile {profile.name} lacks {', '.join(sorted(missing))}")
    started = time.monotonic()
    try:
        with running_kernel(source, timeouts.start) as kernel:
            ctx = CheckContext(kernel, profile, timeouts)
            try:
                finding = check.run(ctx)
                verdict = Verdict(check, Outcome.PASS, finding.figure,
                                  evidence=finding.evidence)
            except NotApplicable as e:
                verdict = Verdict(check, Outcome.NA, why=str(e))
            except Failed as e:
                verdict = Verdict(check, Outcome.FAIL, e.figure, e.why,
                                  e.evidence or ctx.evidence())
            except Exception as e:
                verdict = Verdict(check, Outcome.FAIL, why=f"{type(e).__name__}: {e}",
                                  evidence=[*ctx.evidence(),
                                            *traceback.format_exc().splitlines()[-6:]])
            finally:
                ctx.close()
    except KernelStartFailed as e:
        verdict = Verdict(check, Outcome.FAIL, why=str(e))
    verdict.seconds = time.monotonic() - started
    return verdict


def run_checks(checks: list[Check], source: KernelSource, profile: Profile,
               timeouts: Timeouts,
               progress: Callable[[Verdict], None] = lambda verdict: None) -> list[Verdict]:
    verdicts = []
    for check in checks:
        verdict = run_one(check, source, profile, timeouts)
        progress(verdict)
        verdicts.append(verdict)
    return verdicts
