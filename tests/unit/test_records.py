"""The loader's record count and end-marker search, whatever the chunks (no database).

The loader compares this count with the rows COPY stored; the integration tests check
that it agrees with PostgreSQL's on real files. Here every way of cutting a file into
chunks must give the same answer as reading it whole.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable

import pytest

from pipeline_coverage.importing.records import Records


def problem(chunks: Iterable[bytes], eol: bytes = b"\n") -> tuple[int, tuple[int, str] | None]:
    """(records, the first problem: its line and reason) for a file sent as ``chunks``."""
    records = Records(eol)
    for chunk in chunks:
        if (found := records.feed(chunk)) is not None:
            return records.records, found
    return records.records, records.finish()


def scan(chunks: Iterable[bytes], eol: bytes = b"\n") -> tuple[int, int | None]:
    """(records, the line of the first end marker) for a file sent as ``chunks``."""
    records, found = problem(chunks, eol)
    if found is None:
        return records, None
    line, reason = found
    assert "end-of-data marker" in reason, found
    return records, line


def chunkings(data: bytes) -> Iterable[list[bytes]]:
    """The whole file; byte by byte; and cut in two (and three) at every position."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
        yield [data[:i], data[i : i + 2], data[i + 2 :]]


CASES = [
    # (file, line break, records with the header, line of the first end marker)
    pytest.param(b"h\n1\n2\n", b"\n", 3, None, id="lf"),
    pytest.param(b"h\n1\n2", b"\n", 3, None, id="lf-no-final-break"),
    pytest.param(b"h\r\n1\r\n2\r\n", b"\n", 3, None, id="crlf"),
    pytest.param(b"h\r1\r2\r", b"\r", 3, None, id="cr"),
    pytest.param(b"h\r1\r2", b"\r", 3, None, id="cr-no-final-break"),
    pytest.param(b"h", b"\n", 1, None, id="header-only"),
    pytest.param(b"h\n\n", b"\n", 2, None, id="empty-line"),
    pytest.param(b'h\n"a\nb",c\n2\n', b"\n", 3, None, id="quoted-line-break"),
    pytest.param(b'h\r\n"a\r\nb",c\r\n2\r\n', b"\n", 3, None, id="quoted-crlf"),
    pytest.param(b'h\r"a\rb",c\r2\r', b"\r", 3, None, id="quoted-cr"),
    pytest.param(b'h\n"a""\n""b",c\n2\n', b"\n", 3, None, id="escaped-quotes"),
    pytest.param(b'h\n"a\n\\.\nb",c\n2\n', b"\n", 3, None, id="marker-inside-quotes"),
    pytest.param(b'h\n"\n\\.\r\n",c\n', b"\n", 2, None, id="marker-cr-inside-quotes"),
    pytest.param(b'h\n"\\.",x\n"\\."\n', b"\n", 3, None, id="quoted-backslash-dot"),
    pytest.param(b"h\n\\.x\nx\\.\n\\.\\.\n \\.\n", b"\n", 5, None, id="not-alone-on-its-line"),
    pytest.param(b"h\n1\n2\n\\.\n3\n", b"\n", None, 4, id="marker"),
    pytest.param(b"h\n1\n\\.", b"\n", None, 3, id="marker-last"),
    pytest.param(b"h\n1\n\\.\r", b"\n", None, 3, id="marker-cr-last"),
    pytest.param(b"h\n1\n\\.\r\n2\n", b"\n", None, 3, id="marker-cr-in-lf-file"),
    pytest.param(b"h\r\n1\r\n\\.\r\n2\r\n", b"\n", None, 3, id="marker-crlf"),
    pytest.param(b"h\r1\r\\.\r2\r", b"\r", None, 3, id="marker-cr"),
    pytest.param(b'h\n"x\ny",z\n\\.\n', b"\n", None, 3, id="marker-after-quoted-break"),
    pytest.param(b'h\n"x",z\n\\.\n', b"\n", None, 3, id="marker-after-quotes"),
    pytest.param(b"\\.\n1\n", b"\n", None, 1, id="marker-first"),
]


@pytest.mark.parametrize(("data", "eol", "records", "marker"), CASES)
def test_every_chunking_gives_the_same_count(
    data: bytes, eol: bytes, records: int | None, marker: int | None
) -> None:
    for chunks in chunkings(data):
        found_records, found_marker = scan(chunks, eol)
        assert found_marker == marker, chunks
        if marker is None:
            assert found_records == records, chunks


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_random_csv_is_counted_like_the_csv_module(eol: str) -> None:
    """Random fields with quotes, line breaks and ``\\.`` in them, cut at random places."""
    rng = random.Random(20261125)
    # Line breaks inside fields are of the file's own style (csv.writer quotes only those).
    breaks = ["\r"] if eol == "\r" else ["\n", "\r\n"]
    pieces = ["a", "b,c", '"', '""', "\\.", "\\", ".", " ", "ü", *breaks]
    for _ in range(200):
        rows = [
            ["".join(rng.choices(pieces, k=rng.randrange(4))) for _ in range(3)]
            for _ in range(rng.randrange(1, 12))
        ]
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator=eol).writerows(rows)
        data = text.getvalue().encode()
        expected = len(list(csv.reader(io.StringIO(text.getvalue(), newline=""))))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data), 5)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert scan(chunks, b"\r" if eol == "\r" else b"\n") == (expected, None), data


STRAY = "inside a field that does not start with one"
UNCLOSED = "never closed"


@pytest.mark.parametrize(
    ("data", "eol", "line", "reason"),
    [
        pytest.param(b'h\n1,2\nab"c,d\n4\n', b"\n", 3, STRAY, id="quote-in-a-field"),
        pytest.param(b'h\nDell 27" a,x\nBob 32" b,y\nc,z\n', b"\n", 2, STRAY, id="two-merge"),
        pytest.param(b'h\nAlice "the ace" A,x\n', b"\n", 2, STRAY, id="a-quoted-middle"),
        pytest.param(b'h\n"Alice" A,x\n', b"\n", 2, STRAY, id="after-a-closing-quote"),
        pytest.param(b'h\n"a"\r\nx"y\r\n', b"\n", 3, STRAY, id="crlf"),
        pytest.param(b'h\n1\nAl"ice,x\n3\n4\n', b"\n", 3, STRAY, id="one-stray-quote"),
        pytest.param(b'h\n1\n2,"abc,x\n3\n4', b"\n", 3, UNCLOSED, id="never-closed"),
        pytest.param(b'h\r1\rab"c\r', b"\r", 3, STRAY, id="cr"),
        pytest.param(b'h\n1\nx,ab"c', b"\n", 3, STRAY, id="last-line"),
    ],
)
def test_a_quote_where_csv_has_none_is_refused_at_its_record(
    data: bytes, eol: bytes, line: int, reason: str
) -> None:
    """COPY would take a quote inside a field as the start of a quoted part and silently
    merge values, or whole records, into one; every chunking finds it at its record."""
    for chunks in chunkings(data):
        _, found = problem(chunks, eol)
        assert found is not None, chunks
        assert found[0] == line, chunks
        assert reason in found[1], chunks


@pytest.mark.parametrize(
    "data",
    [
        b'h\n"a ""b"" c",x\n',
        b'h\n"",x,""\n',
        b'h\r\n"a",b\r\n"c\r\nd",e\r\n',
        b'h\n"a\nb"\n',
        b'h\n"x"',
    ],
)
def test_quotes_where_csv_has_them_pass(data: bytes) -> None:
    for chunks in chunkings(data):
        assert problem(chunks)[1] is None, chunks
