"""``commspec conform``: hold a kernel to the spec from outside, one check per rule.

Layout: ``registry`` (what a check and a verdict are), ``kernel`` (starting the kernel
under test through jupyter_client), ``client`` (a raw Jupyter client), ``context``
(what a check works with), ``profiles`` (per-language snippets), ``checks`` (one
module per part of SPEC.md), ``runner`` and ``scorecard``.
"""

from __future__ import annotations

from typing import Any

from . import scorecard
from .context import CheckContext, Timeouts
from .kernel import KernelSource, KernelStartFailed, running_kernel
from .profiles import PROFILES, Profile
from .registry import CHECKS, Check, Failed, Finding, NotApplicable, Outcome, Verdict
from .runner import run_checks, select

__all__ = [
    "CHECKS",
    "PROFILES",
    "Check",
    "CheckContext",
    "Failed",
    "Finding",
    "KernelSource",
    "KernelStartFailed",
    "NotApplicable",
    "Outcome",
    "Profile",
    "Timeouts",
    "Verdict",
    "choose_profile",
    "run_checks",
    "scorecard",
    "select",
]


def choose_profile(source: KernelSource, name: str | None,
                   timeouts: Timeouts) -> tuple[Profile, dict[str, Any]]:
    """The profile named, or the one the kernel's kernel_info_reply suggests, and that
    reply (the kernel is started once to read it)."""
    from commspec.model.messages import FEATURE

    with running_kernel(source, timeouts.start) as kernel:
        info = kernel.kernel_info
    if name is not None:
        return PROFILES[name], info
    if FEATURE in info.get("supported_features", []):
        return PROFILES["commspec"], info
    language = str(info.get("language_info", {}).get("name", "")).lower()
    return PROFILES[language if language in ("python", "r", "julia") else "none"], info
