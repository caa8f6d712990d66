"""Untrusted text made safe to print: the one place for the desk's escaping rules.

File names, usernames, subjects, client addresses and error messages come from outside. Printed
as they are, a newline would forge a line of a report or log, an escape sequence would recolour
or rewrite the terminal, a bidi override would disguise a name. Two presentations:

* :func:`one_line` escapes each character that is not printable as Python writes it (``\\n``,
  ``\\x1b``, ``\\u202e``) and keeps the rest, optionally cut to a width (rejection lines,
  warnings, the audit log as a table);
* :func:`shown` leaves a printable name alone and quotes a name that is not, whole, as ``repr``
  does (file names and paths in messages): the quotes make the oddity visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ELLIPSIS = "…"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none): the part of a
    library's long error a person needs in a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(value: Any, width: int | None = None) -> str:
    """``value`` (``None`` is empty) as one line of text: every character that is not printable
    (newlines, tabs, other controls, zero-width and bidi marks, lone surrogates) escaped as
    Python writes it; cut to ``width`` characters, the last being an ellipsis, when longer."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + ELLIPSIS
    return text


def shown(name: str | Path) -> str:
    """A file name or path for a message: as it is when printable, else quoted and escaped
    (``repr``), so that it stays one line and visibly odd."""
    name = str(name)
    return name if name.isprintable() else repr(name)
