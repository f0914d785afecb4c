"""The errors of the model-based tests, and the checks that raise them."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, TypeVar

F = TypeVar("F", bound=BaseException)


class MbtFailure(AssertionError):
    """The system under test and the model disagree (or a property failed).

    An AssertionError, so pytest shows it as a failed check, not a crash."""


def expect(what: str, got: object, expected: object) -> None:
    """A scenario's check: ``got`` must be ``expected``."""
    if got != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {got!r}")


def failure(future: Future[Any], kind: type[F], timeout: float) -> F:
    """The exception ``future`` ended with (within ``timeout``), which must be a ``kind``."""
    try:
        value = future.result(timeout)
    except kind as e:
        return e
    except TimeoutError as e:
        raise AssertionError(f"expected {kind.__name__}, the request has not ended") from e
    except Exception as e:
        raise AssertionError(f"expected {kind.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {kind.__name__}, got the result {value!r}")


__all__ = ["MbtFailure", "expect", "failure"]
