"""The presets of ``pipeline-coverage import`` on samples written as each CRM writes
its export, format detection, and the deal reader's problems (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.deals import ExportDeal, StageGiven, read_deals
from pipeline_coverage.importing.mapping import format_for
from pipeline_coverage.importing.presets import HUBSPOT, PIPEDRIVE, SALESFORCE, detect

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"


def read(path: Path, fmt: str | None = None, date_format: str | None = None) -> list[ExportDeal]:
    return read_deals(path, format_for(fmt, path, date_format=date_format))[0]


def problems(path: Path, fmt: str | None = None, date_format: str | None = None) -> list[str]:
    with pytest.raises(LoadError) as caught:
        read(path, fmt, date_format)
    return caught.value.problems


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_salesforce_api_names() -> None:
    path = EXPORTS / "salesforce.csv"
    fmt = format_for(None, path)
    assert fmt.name == "salesforce"
    deals, summary = read_deals(path, fmt)
    assert deals[0] == ExportDeal(
        line=2,
        key="0065g00000AbCdEAAV",
        name="Acme - 200 licenses",
        owner="Ana Silva",
        stage="Negotiation/Review",
        state="open",
        amount=Decimal("120000.00"),
        currency="USD",
        close_date=dt.date(2026, 3, 31),
        forecast_category="COMMIT",
        probability=90,
        pipeline="New Business",
    )
    assert [(d.state, d.forecast_category, d.probability) for d in deals] == [
        ("open", "COMMIT", 90),
        ("won", None, 100),
        ("lost", "OMITTED", 0),
        ("open", "PIPELINE", 10),  # Prospecting's standard probability
    ]
    assert deals[2].owner is None
    assert deals[2].amount is None
    assert deals[2].pipeline == "Sales"
    assert deals[1].currency == "EUR"
    assert summary.ignored_columns == ("LeadSource",)
    assert summary.key_column == "Id"
    assert not summary.keyed_by_name
    assert summary.stages[("Renewal", "Closed Won")] == StageGiven("won", 100)


def test_salesforce_is_won_and_is_closed_decide_the_state(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "opps.csv",
        "Id,Name,StageName,IsWon,IsClosed\n1,a,Signed,true,true\n2,b,Dead,false,true\n"
        "3,c,Closed Won,,\n",
    )
    assert [d.state for d in read(path)] == ["won", "lost", "won"]


def test_salesforce_owner_id_when_no_owner_name(tmp_path: Path) -> None:
    path = write(tmp_path, "opps.csv", "Id,Name,StageName,OwnerId\n1,a,Qualification,0055g0\n")
    assert read(path)[0].owner == "0055g0"


def test_salesforce_report_export_with_footer() -> None:
    path = EXPORTS / "salesforce-report.csv"
    fmt = format_for("salesforce", path)  # either Salesforce preset, by its header
    assert fmt.name == "salesforce-report"
    deals, summary = read_deals(path, fmt)
    assert [(d.line, d.key, d.close_date, d.probability, d.pipeline) for d in deals] == [
        (2, "Acme - 200 licenses", dt.date(2026, 3, 31), 75, "New Business"),
        (3, "Globex renewal", dt.date(2026, 2, 14), 100, "Sales"),
        (4, 'Hooli "Phase 2"', dt.date(2026, 12, 1), 25, "New Business"),
    ]
    assert deals[0].forecast_category == "BEST_CASE"
    assert summary.footer_lines == 5
    assert summary.keyed_by_name
    assert summary.key_column == "Opportunity Name"


def test_salesforce_report_lines_after_a_blank_one_that_are_no_footer_are_deals(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "report.csv",
        '"Opportunity Name","Stage"\n"a","Prospecting"\n\n"b","Closed Won"\n\n"just text"\n',
    )
    assert problems(path) == ["report.csv:6: 1 fields where the header has 2"]


def test_salesforce_report_duplicate_names_ask_for_the_id_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "report.csv",
        "Opportunity Name,Stage\nAcme,Prospecting\nX,Prospecting\nAcme,Closed Won\n",
    )
    assert problems(path) == [
        "report.csv:4: Opportunity Name: 'Acme' appears 2 times (lines 2, 4); without an id "
        "column deals are told apart by name: add the Opportunity ID column to the export"
    ]


def test_hubspot() -> None:
    deals, summary = read_deals(EXPORTS / "hubspot.csv", format_for(None, EXPORTS / "hubspot.csv"))
    assert [(d.key, d.state, d.close_date, d.probability, d.forecast_category) for d in deals] == [
        ("9283746501", "open", dt.date(2026, 3, 31), 90, "COMMIT"),  # 0.9 x 100, time ignored
        ("9283746502", "won", dt.date(2026, 2, 14), 100, None),
        ("9283746503", "lost", dt.date(2026, 1, 20), 0, "OMITTED"),  # closedlost's default
        ("9283746504", "open", dt.date(2026, 6, 30), 40, "BEST_CASE"),  # by its label
    ]
    assert deals[3].currency == "USD"  # "usd" as written
    assert deals[0].pipeline == "Sales Pipeline"
    assert summary.stages[("Sales Pipeline", "contractsent")] == StageGiven("open", 90)


def test_hubspot_internal_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "deals.csv",
        "hs_object_id,dealname,dealstage,closedate,hs_forecast_category,pipeline\n"
        "7,a,closedwon,2026-01-02T10:00:00Z,BEST_CASE,default\n",
    )
    (deal,) = read(path)
    assert (deal.key, deal.state, deal.close_date, deal.forecast_category, deal.probability) == (
        "7",
        "won",
        dt.date(2026, 1, 2),
        "BEST_CASE",
        100,
    )


def test_pipedrive() -> None:
    path = EXPORTS / "pipedrive.csv"
    deals, summary = read_deals(path, format_for("pipedrive", path))
    assert [(d.key, d.state, d.close_date) for d in deals] == [
        ("101", "open", dt.date(2026, 3, 31)),  # the expected close date
        ("102", "won", dt.date(2026, 2, 14)),  # the day of its won time
        ("103", "lost", dt.date(2026, 1, 20)),  # the day of its lost time
        ("105", "open", None),
    ]
    assert summary.skipped == {"Deal - Status deleted": 1}
    assert summary.rows == 5
    assert summary.deals == 4
    # A won deal's stage is where it stood: the stage itself stays open.
    assert summary.stages[("Renewals", "Proposal Made")] == StageGiven("open", None)
    assert deals[0].probability == 80
    assert deals[1].probability is None


def test_pipedrive_unknown_status(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "deals.csv",
        "Deal - ID,Deal - Title,Deal - Stage,Deal - Status\n1,a,Lead,archived\n2,b,Lead,archived\n",
    )
    assert problems(path) == [
        "deals.csv: Deal - Status: 1 unmapped status value (add to [statuses] of a mapping "
        "file with preset = \"pipedrive\"): 'archived' (2 deals, first at line 2): "
        '"archived" = "open|won|lost|skip"'
    ]


def test_unmapped_forecast_categories_are_one_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "deals.csv",
        "Id,Name,StageName,ForecastCategoryName\n1,a,Prospecting,Upside\n2,b,Prospecting,Upside\n"
        "3,c,Prospecting,Stretch\n4,d,Prospecting,Commit\n",
    )
    assert problems(path) == [
        "deals.csv: ForecastCategoryName: 2 unmapped forecast category values (add to "
        "[categories] of a mapping file with preset = \"salesforce\"): 'Upside' (2 deals, "
        'first at line 2): "Upside" = "commit|best_case|pipeline|omitted|none", '
        "'Stretch' (1 deal, first at line 4): "
        '"Stretch" = "commit|best_case|pipeline|omitted|none"'
    ]


def test_detection() -> None:
    assert detect(("deal - id", "deal - title", "deal - stage", "deal - status")) is PIPEDRIVE
    assert detect(("record id", "deal name", "deal stage")) is HUBSPOT
    assert detect(("name", "stagename")) is SALESFORCE


def test_detection_failure_says_what_each_preset_misses(tmp_path: Path) -> None:
    path = write(tmp_path, "deals.csv", "Title,Stage,Value\nx,y,1\n")
    with pytest.raises(LoadError) as caught:
        format_for(None, path)
    assert caught.value.problems == [
        "deals.csv:1: not a known export (no preset's required columns are all there: "
        "salesforce misses Id or Name, Name, StageName; salesforce-report misses Opportunity "
        "ID or Opportunity Name, Opportunity Name; hubspot misses Record ID or hs_object_id, "
        "Deal Name or dealname, Deal Stage or dealstage; pipedrive misses Deal - ID, "
        "Deal - Title, Deal - Stage, Deal - Status); name a mapping file with --format"
    ]


def test_detection_of_several(tmp_path: Path) -> None:
    path = write(tmp_path, "deals.csv", "Name,StageName,Record ID,Deal Name,Deal Stage\n")
    with pytest.raises(LoadError, match=r"fits several formats \(salesforce, hubspot\)"):
        format_for(None, path)


def test_a_named_preset_whose_columns_are_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "deals.csv", "Record ID,Deal Name\n1,a\n")
    assert problems(path, "hubspot") == [
        "deals.csv:1: Deal Stage or dealstage: missing column (HubSpot deals export)"
    ]


def test_dates_good_bad_and_date_format(tmp_path: Path) -> None:
    header = "Opportunity Name,Stage,Close Date\n"
    path = write(
        tmp_path, "report.csv", header + "a,Prospecting,3/31/2026\nb,Prospecting,31/3/2026\n"
    )
    assert problems(path) == [
        "report.csv:3: Close Date: not a date in the format M/D/YYYY (%m/%d/%Y): '31/3/2026'"
    ]
    path = write(tmp_path, "report.csv", header + "a,Prospecting,31.03.2026\n")
    assert read(path, date_format="%d.%m.%Y")[0].close_date == dt.date(2026, 3, 31)
    path = write(tmp_path, "deals.csv", "Id,Name,StageName,CloseDate\n1,a,x,2026-02-30\n")
    assert problems(path) == [
        "deals.csv:2: CloseDate: not a date in the format YYYY-M-D (%Y-%m-%d): '2026-02-30'"
    ]
    with pytest.raises(LoadError, match=r"--date-format: not a date format: '%Y'"):
        format_for(None, path, date_format="%Y")


def test_amounts_refuse_symbols_and_separators(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "deals.csv",
        'Id,Name,StageName,Amount,CurrencyIsoCode\n1,a,x,$100,USD\n2,b,x,"1,000",USD\n'
        "3,c,x,-5,USD\n4,d,x,1.005,USD\n5,e,x,10,dollars\n",
    )
    assert problems(path) == [
        "deals.csv:2: Amount: not an amount: '$100' (digits and a decimal point, no symbols)",
        "deals.csv:3: Amount: not an amount: '1,000' (digits and a decimal point, no symbols)",
        "deals.csv:4: Amount: must be >= 0, got '-5'",
        "deals.csv:5: Amount: more than 2 decimal places: '1.005'",
        "deals.csv:6: CurrencyIsoCode: not an ISO 4217 currency code: 'dollars'",
    ]


def test_blank_required_fields_and_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "deals.csv", "Id,Name,StageName\n1,,x\n2,b,\n2,c,x\n2,d,x\n")
    assert problems(path) == [
        "deals.csv:2: Name: blank (every deal needs its name)",
        "deals.csv:3: StageName: blank (every deal needs its stage)",
        "deals.csv:5: Id: '2' appears 2 times (lines 4, 5)",
    ]


def test_problems_are_capped_at_20_and_counted(tmp_path: Path) -> None:
    rows = "".join(f"{n},a,x,bad\n" for n in range(30))
    path = write(tmp_path, "deals.csv", "Id,Name,StageName,Amount\n" + rows)
    with pytest.raises(LoadError) as caught:
        read(path)
    assert len(caught.value.problems) == 20
    assert caught.value.total == 30


def test_xlsx_export_with_typed_cells(tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(
        ["Record ID", "Deal Name", "Deal Stage", "Amount", "Close Date", "Deal probability"]
    )
    sheet.append(
        [123456789, "Acme", "qualifiedtobuy", 1234.5, dt.datetime(2026, 3, 31, 9, 30), 0.4]
    )
    sheet.append([123456790, "Globex", "closedwon", 0.1 + 0.2, "2026-04-01", None])
    path = tmp_path / "deals.xlsx"
    workbook.save(path)
    deals = read(path)
    assert [(d.key, d.amount, d.close_date, d.probability) for d in deals] == [
        ("123456789", Decimal("1234.50"), dt.date(2026, 3, 31), 40),
        ("123456790", Decimal("0.30"), dt.date(2026, 4, 1), 100),
    ]


def test_a_deals_id_text_is_the_uuid5_of_its_parts() -> None:
    """The import writes each deal's id from its SHA-1 without making a UUID object:
    the text must be what ``derived_id`` (``uuid.uuid5``) gives, for any key."""
    import hashlib

    from pipeline_coverage.importing.crm import NAMESPACE, _uuid5_text, derived_id

    for key in ("006000000000000001", "", "Zoë \x00 \U0001f600", "x" * 1000):
        prefix = "t\x1fdeal\x1fsalesforce\x1f"
        digest = hashlib.sha1(NAMESPACE.bytes + (prefix + key).encode(), usedforsecurity=False)
        assert _uuid5_text(digest.digest()) == str(derived_id("t", "deal", "salesforce", key))


def test_a_kind_cell_of_another_type_but_equal_value_is_read_as_its_own(tmp_path: Path) -> None:
    """A workbook's TRUE equals 1 in Python (and hashes alike): a row whose kind cells
    differ from an earlier row's only so is read as it would be alone."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Record ID", "Deal Name", "Deal Stage", "Amount", "Deal probability"])
    sheet.append([1, "Acme", "qualifiedtobuy", 10, 1])
    sheet.append([2, "Globex", "qualifiedtobuy", 20, True])
    path = tmp_path / "deals.xlsx"
    workbook.save(path)
    with pytest.raises(LoadError) as caught:
        read(path)
    assert "not a probability" in " ".join(caught.value.problems)
