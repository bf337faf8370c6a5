"""The text rules of every output (``pipeline_coverage.text``): the one CSV writer and
the terminal's replacement of control characters; Rich printing names literally."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from pipeline_coverage.render import add_row, plain
from pipeline_coverage.text import csv_text, printable, spreadsheet_safe

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


def test_printable_replaces_every_control_character() -> None:
    assert printable("Ann Roe · Ünal") == "Ann Roe · Ünal"
    assert (
        printable("\x1b]0;title\x07a\rb\nc\td\x7f\x9b")
        == "\ufffd]0;title\ufffda\ufffdb\ufffdc\ufffdd\ufffd\ufffd"
    )


def test_rich_prints_names_literally() -> None:
    """Markup, a link and an emoji code in a name are text, not Rich's instructions."""
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system="truecolor")
    table = Table(title=plain("Team [/]"))
    table.add_column("Principal")
    for name in ("[/bold]", "[/]", "[link=http://evil.example]click me[/link]", ":thumbs_up:",
                 "\x1b[31mred"):  # fmt: skip
        add_row(table, name)
    console.print(table)
    console.print(plain("Note: [bold]x[/bold] \x1b]8;;http://evil.example\x07"))

    text = out.getvalue()
    assert "]8;" not in text.replace("\ufffd]8;", "")  # no OSC 8 hyperlink
    for name in ("[/bold]", "[/]", "[link=http://evil.example]click me[/link]", ":thumbs_up:",
                 "\ufffd[31mred", "Team [/]", "Note: [bold]x[/bold]"):  # fmt: skip
        assert name in text, name
