"""Reading an export's table: CSV (BOM, line breaks, quoted lines, streaming) and XLSX
(typed cells, saved formula values, merged headers, sheets), no database."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import pytest
from openpyxl import Workbook

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.tabular import open_table
from pipeline_coverage.importing.values import Cell


def rows_of(path: Path, sheet: str | None = None) -> list[tuple[int, dict[str, Cell]]]:
    with open_table(path, sheet=sheet) as table:
        return [(row.line, row.values) for row in table.rows() if not row.blank]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_csv_any_line_break_and_bom(tmp_path: Path, eol: str, bom: bytes) -> None:
    text = eol.join([" Id ,NAME", '1,"two', 'lines"', "2,plain", ""])
    path = tmp_path / "deals.csv"
    path.write_bytes(bom + text.encode())
    with open_table(path) as table:
        assert [(c.name, c.key) for c in table.columns] == [("Id", "id"), ("NAME", "name")]
        rows = [(row.line, row.values) for row in table.rows()]
    assert rows == [(2, {"id": "1", "name": f"two{eol}lines"}), (4, {"id": "2", "name": "plain"})]


def test_csv_header_problems(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text("Amount,name, amount \n")
    with pytest.raises(LoadError) as caught:
        open_table(path)
    assert caught.value.problems == [
        "deals.csv:1: amount: column appears twice (columns A 'Amount' and C 'amount'; "
        "header names match in any case)"
    ]
    path.write_text("")
    with pytest.raises(LoadError, match=r"deals.csv:1: empty file"):
        open_table(path)


def test_csv_row_shape_and_malformed_record(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text('a,b\n1\n1,2,3\n1,2,\n"open\n')
    with open_table(path) as table:
        rows = table.rows()
        assert next(rows).problems == ((None, "1 fields where the header has 2"),)
        assert next(rows).problems == (
            (None, "a value past the header's last column (column C: '3')"),
        )
        assert next(rows).problems == ()
        with pytest.raises(LoadError, match=r"deals.csv:5: malformed CSV"):
            next(rows)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes(b"a,b\n1,2\n3,\xfc\n")
    with open_table(path) as table, pytest.raises(LoadError, match=r"deals.csv:3: not UTF-8"):
        list(table.rows())


def test_unknown_kinds(tmp_path: Path) -> None:
    for name, message in (
        ("deals.xls", r"save it as \.xlsx or CSV"),
        ("deals.txt", r"not a \.csv or \.xlsx file"),
    ):
        (tmp_path / name).write_text("x")
        with pytest.raises(LoadError, match=message):
            open_table(tmp_path / name)
    (tmp_path / "bad.xlsx").write_text("not a zip")
    with pytest.raises(LoadError, match=r"bad\.xlsx: not an XLSX workbook"):
        open_table(tmp_path / "bad.xlsx")
    (tmp_path / "a.csv").write_text("a\n")
    with pytest.raises(LoadError, match=r"--sheet applies to \.xlsx"):
        open_table(tmp_path / "a.csv", sheet="Deals")


def test_csv_is_streamed(tmp_path: Path) -> None:
    """200,000 rows read with memory that does not grow with the file."""
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("Id,Name,Amount,Close Date\n")
        for number in range(200_000):
            handle.write(f'{number},"Deal {number}, a long enough name",{number}.50,2026-03-31\n')
    tracemalloc.start()
    try:
        count = 0
        with open_table(path) as table:
            for row in table.rows():
                count += 1
                assert row.values["id"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert path.stat().st_size > 10_000_000
    assert peak < 2_000_000, peak


def test_xlsx_typed_cells_and_sheets(tmp_path: Path) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Summary"
    first.append(["Nothing here"])
    deals = workbook.create_sheet("Deals")
    deals.append([" Id", "Amount", "Close Date", "Won", "Total"])
    deals.append([1001, 1234.5, dt.datetime(2026, 3, 31), True, "=B2*2"])
    deals.append([])
    deals.append(["A-2", 10, dt.date(2026, 4, 1), False, None])
    path = tmp_path / "deals.xlsx"
    workbook.save(path)
    # openpyxl writes no saved values for formulas: put one in, as Excel would have.
    _set_cached_value(path, "E2", "2469")
    assert rows_of(path) == []  # the first sheet: a header alone
    rows = rows_of(path, sheet="Deals")
    assert rows == [
        (
            2,
            {
                "id": 1001,
                "amount": 1234.5,
                "close date": dt.datetime(2026, 3, 31),
                "won": True,
                "total": 2469,
            },
        ),
        (
            4,
            {
                "id": "A-2",
                "amount": 10,
                "close date": dt.datetime(2026, 4, 1),
                "won": False,
                "total": None,
            },
        ),
    ]
    with pytest.raises(
        LoadError, match=r"deals.xlsx: no sheet 'Other' \(its sheets: 'Summary', 'Deals'\)"
    ):
        open_table(path, sheet="Other")
    with open_table(path) as table:
        assert table.sheet == "Summary"


def _set_cached_value(path: Path, cell: str, value: str) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = "xl/worksheets/sheet2.xml"
    xml = parts[sheet].decode()
    start = xml.index(f'<c r="{cell}"')
    end = xml.index("</c>", start)
    cell_xml = xml[start:end].replace("<v />", "") + f"<v>{value}</v>"
    parts[sheet] = (xml[:start] + cell_xml + xml[end:]).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def test_xlsx_formula_without_saved_value_is_a_problem_at_its_cell(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Id", "Amount"])
    sheet.append(["a", "=1+1"])
    path = tmp_path / "deals.xlsx"
    workbook.save(path)
    with open_table(path) as table:
        (row,) = list(table.rows())
    assert row.problems == (("Amount", "a formula without a saved value (cell B2)"),)


def test_xlsx_merged_header_is_an_error(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Id", "Deal", None, "Amount"])
    sheet.merge_cells("B1:C1")
    path = tmp_path / "deals.xlsx"
    workbook.save(path)
    with pytest.raises(LoadError) as caught:
        open_table(path)
    assert caught.value.problems == [
        "deals.xlsx:1: merged header cells B1:C1: each column needs a header cell of its own "
        "(unmerge them)"
    ]
