"""The text rules of every output (``pipeline_coverage.text``): the one CSV writer."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from pipeline_coverage.text import csv_text, spreadsheet_safe

FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


def test_a_carriage_return_in_a_field_is_quoted_and_does_not_end_the_record() -> None:
    text = csv_text(("name", "amount"), [["\r=1+1", "-12.50"], ["a\rb", "3"], ["x\ny", None]])

    assert text == 'name,amount\n"\'\r=1+1",-12.50\n"a\rb",3\n"x\ny",\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["name", "amount"], ["'\r=1+1", "-12.50"], ["a\rb", "3"], ["x\ny", ""],
    ]  # fmt: skip


def test_a_formula_is_defused_and_a_number_is_not() -> None:
    for formula in ("=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "\n=1", "-", "-1-1",
                    "=cmd|' /C calc'!A0", "-12.50x"):  # fmt: skip
        assert spreadsheet_safe(formula) == "'" + formula
    for number in ("-12.50", "0", "12.5", "-1E+2", "1.5e-3"):
        assert spreadsheet_safe(number) == number
    for text in ("Ann", "", "'=1", " =1", "[/bold]", "\x1b[31m"):
        assert spreadsheet_safe(text) == text
    assert spreadsheet_safe(None) is None


@given(st.lists(st.lists(st.one_of(st.none(), st.text()), min_size=2, max_size=2), max_size=5))
def test_every_csv_reads_back_as_its_fields(rows: list[list[str | None]]) -> None:
    text = csv_text(("a", "b"), rows)

    parsed = list(csv.reader(io.StringIO(text, newline="")))

    assert parsed[0] == ["a", "b"]
    assert parsed[1:] == [[spreadsheet_safe(value or "") for value in row] for row in rows]
    for record in parsed[1:]:
        for cell in record:
            assert not cell.startswith(FORMULA) or cell.lstrip("-").replace(".", "").isdigit()
