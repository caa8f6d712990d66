"""The one CSV writer of the desk: every CSV the desk hands out (``report --out`` and ``--format
csv``, the lead pages' downloads, the audit export) is written here.

Post sources, usernames, categories and notes come from outside. A spreadsheet opens a cell
that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some of them
skip before reading the rest) as a formula: ``=HYPERLINK("http://x","y")`` in a username becomes
a live link, ``=cmd|…`` a command on older Excel. So text cells and column names that start with
one of those characters get a leading single quote (the OWASP advice for CSV injection), which
spreadsheets show as text; the full-width forms (``＝ ＋ － ＠``), which some locales read the same
way, are treated alike. Numbers are left alone: a negative count or score stays a number, since
only strings can carry a formula.

Lines end in CRLF (RFC 4180, what spreadsheets write): with a bare LF, Python's csv module and
pandas leave a cell holding a lone CR unquoted, and a spreadsheet reads that CR as the end of the
row, so ``"ok\\r=1+1"`` would put a live ``=1+1`` at the start of a row of its own. With CRLF every
cell holding a CR or LF is quoted.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

LINE_END = "\r\n"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet reads it as plain text: a string that would start a formula
    gets a leading ``'``; anything else (numbers, dates, None) is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with its text cells and column names made safe (:func:`safe_cell`);
    numeric, boolean and date columns are kept as they are."""
    out = df.rename(columns=lambda name: safe_cell(str(name)))
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object or isinstance(column.dtype, pd.StringDtype | pd.CategoricalDtype):
            # pandas takes a Series here; pandas-stubs 3.1 lists only scalars and arrays.
            out.isetitem(i, column.astype(object).map(safe_cell))  # type: ignore[arg-type]
    return out


def to_csv(df: pd.DataFrame) -> str:
    """``df`` as CSV text without the index, full precision, formulas neutralised."""
    return neutralise(df).to_csv(index=False, lineterminator=LINE_END)


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """:func:`to_csv` as UTF-8, for a download button."""
    return to_csv(df).encode("utf-8")
