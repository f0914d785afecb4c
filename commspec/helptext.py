"""Help texts from docstrings: the docstrings are reStructuredText for the code's
readers; ``--help`` shows them as plain text."""

from __future__ import annotations

import re

# ``literal``, :role:`target` (or :role:`~target`), `interpreted`, *emphasis*
_MARKUP = re.compile(r"``(.+?)``|:[a-z]+:`~?(.+?)`|`(.+?)`|(?<![\w*])\*([^*\s][^*]*)\*(?!\w)")


def plain(text: str) -> str:
    """``text`` without its inline reStructuredText markup."""
    return _MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, as plain text."""
    return plain((doc or "").split("\n\n")[0])
