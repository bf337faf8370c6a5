"""The loader's record length limit, whatever the chunks (no database)."""

from __future__ import annotations

import pytest

from pipeline_coverage.importing.records import MAX_RECORD_BYTES, Records


def first_problem(data: bytes, size: int) -> tuple[int, str] | None:
    records = Records(b"\n")
    for start in range(0, len(data), size):
        if (found := records.feed(data[start : start + size])) is not None:
            return found
    return records.finish()


SIZES = [1 << 30, 1 << 20, 65_536, 4_099]
LONG = b"x" * MAX_RECORD_BYTES


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(b"h\n1\n" + LONG + b"\n2\n", None, id="the-most"),
        pytest.param(b"h\n1\n" + LONG + b"x\n2\n", 3, id="one-more"),
        pytest.param(b"h\n1\n" + LONG + b"x", 3, id="one-more-last"),
        pytest.param(b'h\n1\n"' + LONG[:-2] + b'"\n2\n', None, id="quoted-the-most"),
        pytest.param(b'h\n1\n"' + LONG[:-1] + b'"\n2\n', 3, id="quoted-one-more"),
        pytest.param(b'h\n"a\n' + LONG[:-4] + b'"\n2\n', None, id="lines-the-most"),
        pytest.param(b'h\n"a\n' + LONG[:-3] + b'"\n2\n', 2, id="lines-one-more"),
        pytest.param(b'h\n"a\n' + LONG, 2, id="lines-unclosed"),
    ],
)
def test_a_record_longer_than_the_most_is_refused_at_its_line(
    data: bytes, line: int | None, size: int
) -> None:
    found = first_problem(data, size)
    if line is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == line
        assert "the most one record may hold" in found[1]
