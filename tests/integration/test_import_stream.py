"""``pipeline-coverage import`` streams the export's deals into the database: the
problems it finds there are the reader's own, word for word, and an unchanged
re-import writes no deal row (not even a lock)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.crm import ImportRequest, import_export
from pipeline_coverage.importing.deals import read_deals
from pipeline_coverage.importing.presets import SALESFORCE

HEADER = ("Id", "Name", "Owner.Name", "StageName", "IsWon", "IsClosed", "Amount",
          "CurrencyIsoCode", "CloseDate", "ForecastCategoryName", "Probability",
          "RecordType.Name")  # fmt: skip


def export(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A Salesforce export of (Id, Name, Amount) rows, open deals of one rep."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for key, name, amount in rows:
            writer.writerow([key, name, "Ana Silva", "Prospecting", "false", "false", amount,
                             "USD", "2026-02-01", "Pipeline", "10", "Sales"])  # fmt: skip
    return path


def test_keys_given_twice_are_reported_as_the_reader_reports_them(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = export(
        tmp_path / "opportunities.csv",
        [("006A", "One", "10"), ("006B", "Two", "20"), ("006B", "Two again", "21"),
         ("006C", "Three", "$30"), ("006A", "One again", "11"), ("006A", "Once more", "12")],
    )  # fmt: skip
    with pytest.raises(LoadError) as read:
        read_deals(path, SALESFORCE)
    with pytest.raises(LoadError) as imported:
        import_export(conn, ImportRequest(tenant="Acme", deals=path, format="salesforce"))
    assert imported.value.problems == read.value.problems
    assert imported.value.total == read.value.total == 3
    assert "appears 3 times (lines 2, 6, 7)" in imported.value.problems[-1]
    found = conn.execute("SELECT count(*) FROM dyno_crm.tenant").fetchone()
    conn.commit()
    assert found == (0,)


def test_an_unchanged_reimport_writes_no_deal(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = export(tmp_path / "opportunities.csv",
                  [(f"006{n:03}", f"Deal {n}", f"{n}.50") for n in range(50)])  # fmt: skip
    request = ImportRequest(tenant="Acme", deals=path, format="salesforce")
    first = import_export(conn, request)
    written = conn.execute("SELECT id, xmin::text, xmax::text FROM dyno_crm.deal").fetchall()
    conn.commit()

    again = import_export(conn, request)

    deals = again.table("deals.csv")
    assert deals is not None
    assert (deals.inserted, deals.updated, deals.unchanged) == (0, 0, 50)
    assert again.tenant_id == first.tenant_id
    now = conn.execute("SELECT id, xmin::text, xmax::text FROM dyno_crm.deal").fetchall()
    conn.commit()
    assert sorted(now) == sorted(written)  # neither a new version nor a lock
