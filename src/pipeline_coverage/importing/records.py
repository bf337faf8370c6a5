"""The byte-level reading of an import file: its chunks, where its header ends, and a
scanner that counts its CSV records as COPY splits them, refusing end-of-data marker
lines, misplaced quotes and records longer than MAX_RECORD_BYTES — all before a chunk is
sent to the server. Nothing here touches the database.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

#: The most bytes one CSV record may hold, the line breaks inside its quoted fields
#: included (its own line break not): a longer one is refused as soon as it is seen,
#: without reading the rest of it. A valid record holds a few hundred bytes; a bad one
#: with a value of a megabyte is still read, and its problem reported.
MAX_RECORD_BYTES = 2 << 20
#: Files are read in chunks of this size (the header must end in the first one). No
#: larger than a record may be: then a line between two line breaks of one chunk is
#: never too long, and only lines that span chunks need counting.
CHUNK = 1 << 20


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        first = handle.read(CHUNK)
        yield first.removeprefix(codecs.BOM_UTF8)
        while chunk := handle.read(CHUNK):
            yield chunk


_QUOTE_OR_BREAK = re.compile(rb'["\r\n]')


def first_record_end(data: bytes) -> int:
    """Where the first CSV record of ``data`` ends: its first line break outside quotes.

    -1 if there is none. Like PostgreSQL's COPY, every ``"`` toggles quoting (``""``
    inside a quoted field toggles twice).
    """
    quoted = False
    for found in _QUOTE_OR_BREAK.finditer(data):
        if found.group() == b'"':
            quoted = not quoted
        elif not quoted:
            return found.start()
    return -1


#: A line holding only these (COPY's end-of-data marker) is rejected.
_MARKERS = (b"\\.", b"\\.\r")
#: Such a line between two line breaks, by the file's line break.
_MARKER_LINE = {
    eol: re.compile(re.escape(eol) + rb"\\\.\r?" + re.escape(eol)) for eol in (b"\n", b"\r")
}


#: A quoted CSV field (quotes inside doubled); possessive, so that a field that does
#: not close fails at once instead of backtracking.
_QUOTED = rb'"(?:[^"]++|"")*+"'
#: A CSV field as RFC 4180 has it: quoted, or without any quote.
_FIELD = rb"(?:" + _QUOTED + rb'|[^",]*+)'
#: A whole record whose quotes are where CSV allows them (a CRLF file's lines end in CR).
_WELL_QUOTED = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*\r?")
#: The complete fields at the start of a line, each with its comma.
_LEADING_FIELDS = re.compile(rb"(?:" + _FIELD + rb",)*")
#: Whole records one after the other, by the file's line break, for checking a chunk's
#: complete lines in one match (an unquoted field holds no line break).
_LINE_FIELD = rb"(?:" + _QUOTED + rb'|[^",\r\n]*+)'
_RECORD = _LINE_FIELD + rb"(?:," + _LINE_FIELD + rb")*\r?"
_WELL_QUOTED_RECORDS = {
    eol: re.compile(_RECORD + rb"(?:" + re.escape(eol) + _RECORD + rb")*") for eol in (b"\n", b"\r")
}

_MARKER_LINE_REASON = "a line holding only \\. (the end-of-data marker of COPY) is not a record"
_STRAY_QUOTE_REASON = (
    'a quote (") inside a field that does not start with one, or after a closing quote'
    ' (quote the whole field and double the quotes in it: "27"" monitor")'
)
_UNCLOSED_REASON = "a quoted field that starts on this line is never closed"
TOO_LONG_REASON = (
    f"a record longer than {MAX_RECORD_BYTES:,} bytes ({MAX_RECORD_BYTES >> 20} MiB),"
    " the most one record may hold"
)


class Records:
    """Counts the CSV records of a file as COPY splits them, chunk by chunk; finds the
    lines that hold only ``\\.``; and checks that the quotes of a record holding any are
    where CSV allows them.

    A record ends at a line break outside quotes; like COPY, every ``"`` toggles quoting
    (``""`` inside a quoted field toggles twice). A line holding only ``\\.`` (or
    ``\\.\\r``) at the start of a record is COPY's end-of-data marker: PostgreSQL 15
    silently stops reading there, PostgreSQL 18 reads it as a bad record. It is found
    here, before its chunk is sent, so that both reject it alike; inside a quoted field
    it is data on both.

    COPY also takes a ``"`` in the middle of a field as the start of a quoted part, so a
    name like ``27" monitor`` would silently swallow the rest of its line, or the next
    records, into one value, with the record count still matching. Such a record is
    refused here, at its line. Chunks without a ``"`` (outside a quoted field) are
    counted with ``bytes.count``; only chunks with quotes are walked line by line, and
    only records with quotes are checked.

    A record longer than MAX_RECORD_BYTES is refused as soon as it is: the bytes of an
    unfinished line are kept as a list of parts (never a growing buffer copied on each
    chunk), so reading is linear in the file's size whatever its lines.
    """

    def __init__(self, eol: bytes) -> None:
        self.eol = eol
        #: Line breaks outside quotes so far: records ended (the header is the first).
        self.ended = 0
        self.quoted = False
        #: Bytes after the last record's line break (a last line without one counts).
        self.open = False
        #: The current line so far while it may still be a marker (it started a record
        #: and has at most 3 bytes), else None.
        self.head: bytes | None = b""
        #: The current line so far, from the chunks before (it goes on in the next), in
        #: parts; their length, and whether any holds a quote.
        self.parts: list[bytes] = []
        self.partial_bytes = 0
        self.partial_quotes = False
        #: The current record's lines before the current one, when it spans lines, and
        #: their bytes with the line breaks after them.
        self.lines: list[bytes] = []
        self.lines_bytes = 0

    @property
    def records(self) -> int:
        """Records so far, the header included."""
        return self.ended + int(self.open)

    def feed(self, chunk: bytes) -> tuple[int, str] | None:
        """Count ``chunk``; the first problem it completes, if any: (line, reason)."""
        eol = self.eol
        if self.quoted or self.partial_quotes or b'"' in chunk:
            return self._feed_lines(chunk)
        first = chunk.find(eol)
        if first < 0:
            self._extend(chunk)
            return self._carry(chunk)
        if self.partial_bytes + first > MAX_RECORD_BYTES:
            return self.ended + 1, TOO_LONG_REASON
        if first <= 3 and self._is_marker(chunk[:first]):
            return self.ended + 1, _MARKER_LINE_REASON
        # A one-byte search is fast (memchr); backslashes are rare in CRM data.
        if b"\\" in chunk and (found := _MARKER_LINE[eol].search(chunk)):
            return self.ended + chunk.count(eol, 0, found.start() + 1) + 1, _MARKER_LINE_REASON
        # A line between two line breaks of the chunk is shorter than the chunk: only a
        # chunk longer than a record may be holding one too long.
        if len(chunk) > MAX_RECORD_BYTES and (problem := self._long_line(chunk)):
            return problem
        self.ended += chunk.count(eol)
        last = chunk[chunk.rfind(eol) + 1 :]
        self.head = last if len(last) <= 3 else None
        self.open = bool(last)
        self.parts = []
        self.partial_bytes = 0
        return self._carry(last)

    def finish(self) -> tuple[int, str] | None:
        """At the end of the file: a problem of its last line, if any."""
        if self.head in _MARKERS:
            return self.ended + 1, _MARKER_LINE_REASON
        if self.quoted or self.partial_quotes:
            return self._check([*self.lines, b"".join(self.parts)], closed=not self.quoted)
        return None

    def _carry(self, part: bytes) -> tuple[int, str] | None:
        """Keep ``part`` (no line break in it) as the current line's next bytes; the
        problem if the record is now too long."""
        self.parts.append(part)
        self.partial_bytes += len(part)
        self.partial_quotes = self.partial_quotes or b'"' in part
        if self.lines_bytes + self.partial_bytes > MAX_RECORD_BYTES:
            return self.ended + 1, TOO_LONG_REASON
        return None

    def _take_partial(self) -> bytes:
        """The current line's bytes from the chunks before, which a line break ends."""
        partial = b"".join(self.parts)
        self.parts = []
        self.partial_bytes = 0
        self.partial_quotes = False
        return partial

    def _long_line(self, chunk: bytes) -> tuple[int, str] | None:
        """The problem of the first line too long between two line breaks of ``chunk``
        (a chunk without quotes: its lines are records)."""
        eol = self.eol
        start = chunk.find(eol) + 1
        ended = self.ended + 1
        while (end := chunk.find(eol, start)) >= 0:
            if end - start > MAX_RECORD_BYTES:
                return ended + 1, TOO_LONG_REASON
            start = end + 1
            ended += 1
        return None

    def _check(self, lines: list[bytes], *, closed: bool) -> tuple[int, str] | None:
        """The problem of the record of ``lines`` (the current one), if any."""
        line = self.ended + 1
        if closed and _WELL_QUOTED.fullmatch(self.eol.join(lines)):
            return None
        # Where it goes wrong: a quote in a field that does not start with one, or an
        # opening quote never closed (the record then ran on to the end of the file).
        first = lines[0]
        start = _LEADING_FIELDS.match(first)
        rest = first[start.end() if start else 0 :]
        if closed or not rest.startswith(b'"'):
            return line, _STRAY_QUOTE_REASON
        return line, _UNCLOSED_REASON

    def _is_marker(self, rest: bytes) -> bool:
        """Whether the current line, ending after ``rest``, is a marker line."""
        head = self.head
        return head is not None and len(head) + len(rest) <= 3 and head + rest in _MARKERS

    def _extend(self, part: bytes) -> None:
        """The current line goes on with ``part`` (no line break in it)."""
        head = self.head
        self.head = head + part if head is not None and len(head) + len(part) <= 3 else None
        self.open = self.open or bool(part)

    def _feed_lines(self, chunk: bytes) -> tuple[int, str] | None:
        eol = self.eol
        *pieces, last = chunk.split(eol)
        quoted, head = self.quoted, self.head
        partial = self._take_partial() if pieces else b""
        # Most chunks with quotes are well quoted: checked at once, their records are
        # not checked one by one.
        checked = (
            not quoted
            and bool(pieces)
            and _WELL_QUOTED_RECORDS[eol].fullmatch(
                partial + chunk[: len(chunk) - len(last) - len(eol)]
            )
            is not None
        )
        well_quoted = _WELL_QUOTED.fullmatch
        for piece in pieces:
            if head is not None and len(head) + len(piece) <= 3 and head + piece in _MARKERS:
                return self.ended + 1, _MARKER_LINE_REASON
            if piece.count(b'"') & 1:  # (the quotes of the line's start are counted)
                quoted = not quoted
            line = partial + piece if partial else piece
            partial = b""
            if self.lines_bytes + len(line) > MAX_RECORD_BYTES:
                return self.ended + 1, TOO_LONG_REASON
            if quoted:  # a line break inside a quoted field: the record goes on
                self.lines.append(line)
                self.lines_bytes += len(line) + len(eol)
                head = None
                continue
            if self.lines:
                if problem := self._check([*self.lines, line], closed=True):
                    return problem
                self.lines = []
                self.lines_bytes = 0
            elif not checked and b'"' in line and not well_quoted(line):
                return self._check([line], closed=True)
            self.ended += 1
            head = b""
        self.quoted, self.head = quoted, head
        if pieces:  # after a line break inside quotes, the record is still open
            self.open = quoted
        self._extend(last)
        if last.count(b'"') & 1:
            self.quoted = not self.quoted
        return self._carry(last)
