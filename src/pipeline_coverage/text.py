"""Text from the CRM (the names of tenants, reps, teams, pipelines, stages and deals,
and anything quoting them) as each output shows it.

Names come from CRM exports and may hold anything: quotes, line breaks, a spreadsheet
formula, terminal escape sequences. Two rules keep every output intact and inert:

* :func:`printable` — a line for a terminal: every control character (C0, DEL, C1:
  an escape sequence's ESC and CSI, BEL, CR, LF, tab, ...) replaced by U+FFFD, so that
  a name cannot restyle, move, retitle or clear the terminal, nor start a line of its
  own.
* :func:`csv_text` — the one CSV writer: a field holding a comma, a quote, a CR or an
  LF is quoted (a bare CR inside a name does not end the record), and a cell that a
  spreadsheet would run as a formula gets a leading apostrophe (:func:`spreadsheet_safe`).

JSON needs neither: ``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

#: What a spreadsheet takes as the start of a formula (OWASP's list, and LF).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
#: A number as the product writes one (an amount, a ratio, a count): never a formula,
#: so ``-12.50`` stays a number.
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
#: A field holding one of these is quoted.
_QUOTED = re.compile(r'[",\r\n]')


def printable(text: str) -> str:
    """``text`` as a terminal shows it: its control characters replaced by U+FFFD."""
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def spreadsheet_safe(text: str | None) -> str | None:
    """A cell a spreadsheet would run as a formula (one starting with ``=``, ``+``,
    ``-``, ``@``, a tab, a CR or an LF) with a leading apostrophe; a number
    (``-12.50``) as it is."""
    if text and text.startswith(FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _field(value: object) -> str:
    text = spreadsheet_safe("" if value is None else str(value)) or ""
    if _QUOTED.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document: a header, then a record per row, each ending in LF.

    An empty field is NULL; every cell goes through :func:`spreadsheet_safe`; a field
    holding a comma, a quote, a CR or an LF is quoted (RFC 4180), so that each record
    reads back, with Python's ``csv`` module or a spreadsheet, as exactly its fields.
    """
    lines = [",".join(_field(name) for name in columns)]
    lines += [",".join(_field(value) for value in row) for row in rows]
    return "\n".join(lines) + "\n"
