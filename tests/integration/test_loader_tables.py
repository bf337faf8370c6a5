"""Rows held in memory (what ``import`` makes of a CRM's export) go through the same
staging, checks and upsert as a folder of CSV files, reported at the caller's file and
line."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.formats import BY_FILE
from pipeline_coverage.importing.load import Row, TableLoad, load_tables
from tests.integration.test_loader import (
    HEADERS,
    Ids,
    Rows,
    counts,
    dump,
    existing_data,
    fetch,
    load,
    new_id,
    set_value,
    valid_rows,
    write_folder,
)


def as_rows(rows: dict[str, Rows]) -> dict[str, list[Row]]:
    """The folder's rows as load_tables takes them: each at its line of the CSV file
    (the header is line 1), in the order of the file's columns."""
    return {
        file: [(line, list(values)) for line, values in enumerate(file_rows, start=2)]
        for file, file_rows in rows.items()
    }


def typed(file: str, values: list[object]) -> list[object]:
    """A row's texts as Python values (None for an empty field)."""
    out: list[object] = []
    for column, value in zip(HEADERS[file], values, strict=True):
        kind = next(c.kind for c in BY_FILE[file].columns if c.name == column)
        if value == "":
            out.append(None)
        elif kind == "uuid":
            out.append(uuid.UUID(str(value)))
        elif kind == "money":
            out.append(Decimal(str(value)))
        elif kind == "date":
            out.append(dt.date.fromisoformat(str(value)))
        elif kind == "int":
            out.append(int(str(value)))
        elif kind == "bool":
            out.append(value == "true")
        else:
            out.append(value)
    return out


def load_rows(
    conn: psycopg.Connection[Any], rows: dict[str, list[Row]], **options: Any
) -> list[TableLoad]:
    assert conn.info.transaction_status == TransactionStatus.IDLE
    loads = load_tables(conn, rows, columns={file: list(HEADERS[file]) for file in rows}, **options)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    return loads


def reject_rows(
    conn: psycopg.Connection[Any], rows: dict[str, list[Row]], **options: Any
) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load_rows(conn, rows, **options)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    return caught.value


def empty(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE dyno_crm.tenant CASCADE")
    conn.commit()


@pytest.mark.parametrize("values", ["text", "python"])
def test_rows_load_exactly_as_the_same_rows_in_csv_files(
    values: str, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows, quote_deals=True)
    from_files = load(conn, data_dir)
    loaded = dump(db_url)
    assert sum(len(table) for table in loaded.values()) > 20
    empty(conn)

    in_memory = as_rows(rows)
    if values == "python":
        in_memory = {
            file: [(line, typed(file, list(row))) for line, row in file_rows]
            for file, file_rows in in_memory.items()
        }
    from_rows = load_rows(conn, in_memory)

    assert from_rows == from_files  # the same counts and tenants, file by file
    assert dump(db_url) == loaded
    # And again: nothing changes.
    again = load_rows(conn, in_memory)
    assert counts(again) == [(x.file, x.table, x.rows, 0, 0, x.rows) for x in from_files]
    assert dump(db_url) == loaded


def test_every_column_by_default_and_a_column_left_out_is_left_as_it_is(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    tenant = new_id()
    load_tables(conn, {"tenants.csv": [(2, [tenant, "Acme", "EUR", 4])]})
    assert fetch(db_url, "SELECT name, currency, fiscal_year_start_month FROM dyno_crm.tenant") == [
        ("Acme", "EUR", 4)
    ]

    load_tables(
        conn, {"tenants.csv": [(2, [tenant, "Acme AG"])]}, columns={"tenants.csv": ["id", "name"]}
    )

    assert fetch(db_url, "SELECT name, currency, fiscal_year_start_month FROM dyno_crm.tenant") == [
        ("Acme AG", "EUR", 4)
    ]


def test_a_bad_value_is_refused_at_the_callers_file_and_line(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    existing_data(conn)
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 1, "amount", "-5.00")
    in_memory = as_rows(rows)
    file, line, values = "deals.csv", 17, in_memory["deals.csv"][1][1]
    in_memory[file][1] = (line, values)
    before = dump(db_url)

    error = reject_rows(conn, in_memory, source={file: "hubspot-deals.csv"})

    assert error.problems == ["hubspot-deals.csv:17: amount: must be >= 0, got -5.00"]
    assert dump(db_url) == before


def test_a_reference_to_an_unknown_pipeline_is_refused_and_nothing_written(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    unknown = new_id()
    set_value(rows, "deals.csv", 0, "pipeline_id", unknown)
    before = dump(db_url)

    error = reject_rows(conn, as_rows(rows), source="export.csv")

    assert error.problems == [
        f"export.csv:2: pipeline_id: no pipeline {unknown} in tenant {ids.tenant_a}"
    ]
    assert dump(db_url) == before


def test_every_files_problems_are_reported_together_each_with_its_source(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    rows = valid_rows(Ids())
    set_value(rows, "users.csv", 2, "is_active", "maybe")
    set_value(rows, "sales_targets.csv", 0, "period_start", "Q1")
    before = dump(db_url)

    error = reject_rows(
        conn, as_rows(rows), source={"users.csv": "deals.xlsx", "sales_targets.csv": "quota.csv"}
    )

    assert error.problems == [
        "deals.xlsx:4: is_active: not true or false: 'maybe'",
        "quota.csv:2: period_start: not a date (YYYY-MM-DD): 'Q1'",
    ]
    assert dump(db_url) == before


def test_rows_may_share_a_line_and_a_duplicate_key_among_them_is_named(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """A wide quota sheet gives several targets per line."""
    ids = Ids()
    rows = as_rows(valid_rows(ids))
    a = ids.tenant_a
    targets: list[Row] = [
        (5, [new_id(), a, "USER", ids.alice, "", "2026-01-01", "2026-04-01", "10"]),
        (5, [new_id(), a, "USER", ids.alice, "", "2026-04-01", "2026-07-01", "20"]),
    ]
    rows["sales_targets.csv"] = targets
    loads = load_rows(conn, rows)
    assert loads[-1].file == "sales_targets.csv"
    assert (loads[-1].rows, loads[-1].inserted) == (2, 2)

    twice = targets[0][1]
    rows["sales_targets.csv"] = [*targets, (5, twice), (3, twice)]
    before = dump(db_url)

    error = reject_rows(conn, rows)

    assert error.problems == [
        "sales_targets.csv:5: tenant_id,id: duplicate key, first on line 3",
        "sales_targets.csv:5: tenant_id,id: duplicate key, first on line 3",
    ]
    assert dump(db_url) == before


def test_a_nul_character_or_a_lone_surrogate_is_refused_at_its_line(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    before = dump(db_url)
    for name, reason in [
        ("Ac\x00me", "name: a NUL byte (0x00), which no text value can hold"),
        ("Ac\udcfcme", "name: not UTF-8 text (surrogates not allowed)"),
    ]:
        error = reject_rows(conn, {"tenants.csv": [(2, [new_id(), "Fine"]), (9, [new_id(), name])]})
        assert error.problems == [f"tenants.csv:9: {reason}"]
    assert dump(db_url) == before


def test_rows_no_import_could_hold_are_a_programming_error(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    before = dump(db_url)
    tenant = new_id()
    with pytest.raises(ValueError, match=r"not import files: deal\.csv"):
        load_tables(conn, {"deal.csv": []})
    with pytest.raises(ValueError, match="missing"):
        load_tables(conn, {"tenants.csv": []}, columns={"tenants.csv": ["id"]})
    with pytest.raises(ValueError, match="2 values for 4 columns"):
        load_tables(conn, {"tenants.csv": [(2, [tenant, "Acme"])]})
    with pytest.raises(TypeError, match="float"):
        load_tables(conn, {"tenants.csv": [(2, [tenant, "Acme", "USD", 1.0])]})
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert dump(db_url) == before
