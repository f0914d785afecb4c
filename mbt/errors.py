"""The one error of the model-based tests."""

from __future__ import annotations


class MbtFailure(AssertionError):
    """The system under test and the model disagree (or a property failed).

    An AssertionError, so pytest shows it as a failed check, not a crash."""


__all__ = ["MbtFailure"]
