"""The CSV import (SPEC.md §4) against a real PostgreSQL.

Every folder is written by the tests themselves; the database is inspected through a
separate autocommit connection, so only committed data is ever seen.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus

from pipeline_coverage.errors import InputError, LoadError, PipelineCoverageError
from pipeline_coverage.importing.load import TableLoad, load_directory, load_tables
from pipeline_coverage.importing.values import MAX_PROBLEMS
from pipeline_coverage.presentation import SHOWN_CHARS
from tests.factory import Crm

Rows = list[list[str]]
Dump = dict[str, list[tuple[Any, ...]]]

HEADERS: dict[str, tuple[str, ...]] = {
    "tenants.csv": ("id", "name"),
    "users.csv": ("id", "tenant_id", "name", "email", "is_active"),
    "groups.csv": ("id", "tenant_id", "name"),
    "group_members.csv": ("tenant_id", "group_id", "user_id"),
    "pipelines.csv": ("id", "tenant_id", "name"),
    "pipeline_stages.csv": (
        "id", "tenant_id", "pipeline_id", "name", "stage_state", "probability", "position",
    ),
    "deals.csv": (
        "id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
        "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
        "assigned_group_id",
    ),
    "sales_targets.csv": (
        "id", "tenant_id", "principal_type", "principal_id", "pipeline_id", "period_start",
        "period_end", "target_amount",
    ),
}  # fmt: skip

#: How an unknown column's message lists what tenants.csv may have.
TENANT_COLUMNS = "expected: id,name; optional: currency,fiscal_year_start_month"

#: The files in the order the loader loads them (and reports them).
LOAD_ORDER = tuple(HEADERS)

DYNO_CRM_TABLES = {
    "tenant", "crm_user", "crm_group", "group_member", "pipeline", "pipeline_stage", "deal",
    "sales_target", "report_run", "report_pipeline_coverage_fact",
}  # fmt: skip


# --- helpers -------------------------------------------------------------------------


def write_csv(
    directory: Path,
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    bom: bool = False,
    quote_all: bool = False,
) -> Path:
    """Write ``name`` into ``directory``: a header row, then ``rows`` (UTF-8, ``\\n``)."""
    path = directory / name
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = (
            csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
            if quote_all
            else csv.writer(handle, lineterminator="\n")
        )
        writer.writerow(header)
        writer.writerows(rows)
    return path


def new_id() -> str:
    return str(uuid.uuid4())


class Ids:
    """The ids of the valid data set: two tenants, A (most rows) and B."""

    def __init__(self) -> None:
        self.tenant_a, self.tenant_b = new_id(), new_id()
        self.alice, self.bob, self.bea = new_id(), new_id(), new_id()
        self.east, self.west = new_id(), new_id()
        self.sales, self.renewals, self.other = new_id(), new_id(), new_id()
        self.open, self.won, self.lead = new_id(), new_id(), new_id()
        self.renew_open, self.other_open = new_id(), new_id()
        self.deal1, self.deal2, self.deal3, self.deal_b = new_id(), new_id(), new_id(), new_id()
        self.target_alice, self.target_east, self.target_bea = new_id(), new_id(), new_id()

    def fill(self, template: str) -> str:
        """``template`` with ``{name}`` replaced by the id of that name."""
        return template.format(**vars(self))


def valid_rows(ids: Ids) -> dict[str, Rows]:
    """A complete, valid import: every file, with NULLs, both tenants, all kinds."""
    a, b = ids.tenant_a, ids.tenant_b
    return {
        "tenants.csv": [[a, "Acme"], [b, "Beta"]],
        "users.csv": [
            [ids.alice, a, "Alice Andersen", "alice@acme.test", "true"],
            [ids.bob, a, "Bob Becker", "", "false"],
            [ids.bea, b, "Bea Brown", "bea@beta.test", "true"],
        ],
        "groups.csv": [[ids.east, a, "East"], [ids.west, b, "West"]],
        "group_members.csv": [[a, ids.east, ids.alice], [a, ids.east, ids.bob],
                              [b, ids.west, ids.bea]],
        "pipelines.csv": [[ids.sales, a, "New Business"], [ids.renewals, a, "Renewals"],
                          [ids.other, b, "Beta Sales"]],
        "pipeline_stages.csv": [
            [ids.open, a, ids.sales, "Proposal", "IN_PROGRESS", "50", "2"],
            [ids.won, a, ids.sales, "Closed Won", "DONE_SUCCESS", "100", "3"],
            [ids.lead, a, ids.sales, "Lead", "NOT_STARTED", "", ""],
            [ids.renew_open, a, ids.renewals, "Renewal due", "IN_PROGRESS", "0", "1"],
            [ids.other_open, b, ids.other, "Open", "IN_PROGRESS", "30", "1"],
        ],
        "deals.csv": [
            [ids.deal1, a, ids.sales, ids.open, "Acme Platform", "1250.50", "2026-02-15", "",
             ids.alice, ids.bob, ids.east, ""],
            [ids.deal2, a, ids.sales, ids.won, "Acme Won", "", "", "2026-01-10", "", "", "", ""],
            [ids.deal3, a, ids.renewals, ids.renew_open, "Acme Renewal", "0.05", "2026-03-31",
             "2026-04-02", "", ids.alice, "", ids.east],
            [ids.deal_b, b, ids.other, ids.other_open, "Beta Deal", "99", "2026-03-01", "",
             ids.bea, "", ids.west, ids.west],
        ],
        "sales_targets.csv": [
            [ids.target_alice, a, "USER", ids.alice, "", "2026-01-01", "2026-04-01", "1000.00"],
            [ids.target_east, a, "GROUP", ids.east, ids.sales, "2026-01-01", "2026-04-01",
             "5000"],
            [ids.target_bea, b, "USER", ids.bea, ids.other, "2026-01-01", "2026-04-01", "0"],
        ],
    }  # fmt: skip


def write_folder(directory: Path, rows: dict[str, Rows], *, quote_deals: bool = False) -> None:
    """Write every file of ``rows`` with its documented header."""
    for name, file_rows in rows.items():
        write_csv(
            directory, name, HEADERS[name], file_rows, quote_all=quote_deals and name == "deals.csv"
        )


def set_value(rows: dict[str, Rows], file: str, row: int, column: str, value: str) -> None:
    rows[file][row][HEADERS[file].index(column)] = value


#: Recorded history's bookkeeping (SPEC.md §13), which every load that writes deals
#: moves: tests/integration/test_history.py checks it; a dump leaves it out.
HISTORY = {
    ("deal", "recorded_from"), ("tenant", "recorded_until"), ("tenant", "recorded_since"),
    ("deal_version", None),
}  # fmt: skip


def dump(url: str) -> Dump:
    """Every row of every dyno_crm table, as committed (sorted, so comparable), but
    for recorded history (:data:`HISTORY`)."""
    with psycopg.connect(url, autocommit=True) as db:
        columns: dict[str, list[str]] = {}
        for table, column in db.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns AS c"
            " JOIN information_schema.tables AS t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'dyno_crm' AND t.table_type = 'BASE TABLE'"
            " ORDER BY c.table_name, c.ordinal_position"
        ).fetchall():
            if (table, None) not in HISTORY and (table, column) not in HISTORY:
                columns.setdefault(str(table), []).append(str(column))
        return {
            table: sorted(
                db.execute(
                    sql.SQL("SELECT {} FROM {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.Identifier("dyno_crm", table),
                    )
                ).fetchall(),
                key=repr,
            )
            for table, names in columns.items()
        }


def fetch(url: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(query, params).fetchall()


def fetch_one(url: str, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    rows = fetch(url, query, params)
    assert len(rows) == 1, rows
    return rows[0]


def counts(loads: list[TableLoad]) -> list[tuple[str, str, int, int, int, int]]:
    return [(x.file, x.table, x.rows, x.inserted, x.updated, x.unchanged) for x in loads]


def load(
    conn: psycopg.Connection[Any], directory: Path, recorded_at: dt.datetime | None = None
) -> list[TableLoad]:
    """Load, and check the caller's idle connection is left idle (the load committed)."""
    assert conn.info.transaction_status == TransactionStatus.IDLE
    loads = load_directory(conn, directory, recorded_at=recorded_at)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    return loads


def reject(conn: psycopg.Connection[Any], directory: Path) -> LoadError:
    """Load a folder that must be rejected; the connection must stay usable."""
    with pytest.raises(LoadError) as caught:
        load_directory(conn, directory)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    return caught.value


def loaded_folder(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path,
    recorded_at: dt.datetime | None = None,
) -> tuple[Ids, dict[str, Rows], Dump]:  # fmt: skip
    """The valid folder, written and loaded: its ids, its rows (for a test to change and
    load again) and the database as it then is."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    load(conn, data_dir, recorded_at=recorded_at)
    return ids, rows, dump(db_url)


def existing_data(conn: psycopg.Connection[Any]) -> uuid.UUID:
    """Rows that were in the database before the import (they must survive a rejection)."""
    crm = Crm(conn)
    tenant = crm.tenant("Existing Co")
    user = crm.user(tenant, "Existing Rep")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    crm.deal(tenant, pipeline, stage, "10.00", expected=dt.date(2026, 1, 5), owner=user)
    return tenant


# --- a complete, valid folder --------------------------------------------------------


def test_complete_folder_loads_typed_values_and_counts(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    write_folder(data_dir, valid_rows(ids), quote_deals=True)
    # The deals file quotes every field, so its empty fields are quoted empty strings.
    assert ',"",' in (data_dir / "deals.csv").read_text(encoding="utf-8")

    loads = load(conn, data_dir)

    assert counts(loads) == [
        ("tenants.csv", "tenant", 2, 2, 0, 0),
        ("users.csv", "crm_user", 3, 3, 0, 0),
        ("groups.csv", "crm_group", 2, 2, 0, 0),
        ("group_members.csv", "group_member", 3, 3, 0, 0),
        ("pipelines.csv", "pipeline", 3, 3, 0, 0),
        ("pipeline_stages.csv", "pipeline_stage", 5, 5, 0, 0),
        ("deals.csv", "deal", 4, 4, 0, 0),
        ("sales_targets.csv", "sales_target", 3, 3, 0, 0),
    ]
    a, b = uuid.UUID(ids.tenant_a), uuid.UUID(ids.tenant_b)
    assert fetch(db_url, "SELECT id, name FROM dyno_crm.tenant ORDER BY name") == [
        (a, "Acme"), (b, "Beta"),
    ]  # fmt: skip
    assert fetch(
        db_url, "SELECT tenant_id, id, name, email, is_active FROM dyno_crm.crm_user ORDER BY name"
    ) == [
        (a, uuid.UUID(ids.alice), "Alice Andersen", "alice@acme.test", True),
        (b, uuid.UUID(ids.bea), "Bea Brown", "bea@beta.test", True),
        (a, uuid.UUID(ids.bob), "Bob Becker", None, False),
    ]
    assert fetch(
        db_url,
        "SELECT tenant_id, group_id, user_id FROM dyno_crm.group_member WHERE user_id = %s",
        [ids.bob],
    ) == [(a, uuid.UUID(ids.east), uuid.UUID(ids.bob))]
    assert fetch(
        db_url,
        "SELECT id, pipeline_id, name, stage_state, probability, position"
        " FROM dyno_crm.pipeline_stage WHERE id IN (%s, %s) ORDER BY name",
        [ids.open, ids.lead],
    ) == [
        (uuid.UUID(ids.lead), uuid.UUID(ids.sales), "Lead", "NOT_STARTED", None, None),
        (uuid.UUID(ids.open), uuid.UUID(ids.sales), "Proposal", "IN_PROGRESS", 50, 2),
    ]

    deal_columns = (
        "SELECT tenant_id, pipeline_id, stage_id, name, amount, expected_close_date, close_date,"
        " owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id"
        " FROM dyno_crm.deal WHERE id = %s"
    )
    deal1 = fetch_one(db_url, deal_columns, [ids.deal1])
    assert deal1 == (
        a, uuid.UUID(ids.sales), uuid.UUID(ids.open), "Acme Platform", Decimal("1250.50"),
        dt.date(2026, 2, 15), None, uuid.UUID(ids.alice), uuid.UUID(ids.bob),
        uuid.UUID(ids.east), None,
    )  # fmt: skip
    assert isinstance(deal1[4], Decimal)
    assert str(deal1[4]) == "1250.50"
    # Quoted empty fields ("") are NULL too, for every type.
    deal2 = fetch_one(db_url, deal_columns, [ids.deal2])
    assert deal2[3:] == ("Acme Won", None, None, dt.date(2026, 1, 10), None, None, None, None)
    deal3 = fetch_one(db_url, deal_columns, [ids.deal3])
    assert deal3[4:7] == (Decimal("0.05"), dt.date(2026, 3, 31), dt.date(2026, 4, 2))
    assert deal3[7:] == (None, uuid.UUID(ids.alice), None, uuid.UUID(ids.east))

    assert fetch(
        db_url,
        "SELECT tenant_id, principal_type, principal_id, pipeline_id, period_start, period_end,"
        " target_amount FROM dyno_crm.sales_target ORDER BY target_amount",
    ) == [
        (b, "USER", uuid.UUID(ids.bea), uuid.UUID(ids.other), dt.date(2026, 1, 1),
         dt.date(2026, 4, 1), Decimal("0.00")),
        (a, "USER", uuid.UUID(ids.alice), None, dt.date(2026, 1, 1), dt.date(2026, 4, 1),
         Decimal("1000.00")),
        (a, "GROUP", uuid.UUID(ids.east), uuid.UUID(ids.sales), dt.date(2026, 1, 1),
         dt.date(2026, 4, 1), Decimal("5000.00")),
    ]  # fmt: skip


def test_loading_the_same_folder_twice_changes_nothing(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    write_folder(data_dir, valid_rows(Ids()), quote_deals=True)
    # The same export (taken at one time) twice: a later one would move the tenant's
    # latest recorded time, and nothing else.
    taken = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    first = load(conn, data_dir, taken)
    after_first = dump(db_url)
    assert sum(len(rows) for rows in after_first.values()) > 20

    second = load(conn, data_dir, taken)

    assert [x.file for x in second] == list(LOAD_ORDER)
    assert [(x.rows, x.inserted, x.updated, x.unchanged) for x in second] == [
        (x.rows, 0, 0, x.rows) for x in first
    ]
    assert all(x.rows > 0 for x in second)
    assert dump(db_url) == after_first


def test_changing_one_field_updates_exactly_one_row(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids, rows, before = loaded_folder(conn, db_url, data_dir)

    set_value(rows, "deals.csv", 0, "amount", "1300.00")
    write_folder(data_dir, rows)
    loads = load(conn, data_dir)

    by_file = {x.file: x for x in loads}
    assert (by_file["deals.csv"].updated, by_file["deals.csv"].inserted) == (1, 0)
    assert by_file["deals.csv"].unchanged == 3
    assert sum(x.updated for x in loads) == 1
    assert sum(x.inserted for x in loads) == 0
    assert fetch_one(db_url, "SELECT amount FROM dyno_crm.deal WHERE id = %s", [ids.deal1]) == (
        Decimal("1300.00"),
    )
    after = dump(db_url)
    assert after["deal"] != before["deal"]
    assert {k: v for k, v in after.items() if k != "deal"} == {
        k: v for k, v in before.items() if k != "deal"
    }


def test_equal_values_written_differently_are_unchanged(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """1250.5 is 1250.50, TRUE is true, an upper-case UUID is the same UUID."""
    ids, rows, before = loaded_folder(conn, db_url, data_dir)

    set_value(rows, "deals.csv", 0, "amount", "1250.5")
    set_value(rows, "deals.csv", 0, "owned_by_user_id", ids.alice.upper())
    set_value(rows, "users.csv", 0, "is_active", "TRUE")
    write_folder(data_dir, rows)
    loads = load(conn, data_dir)

    assert sum(x.updated + x.inserted for x in loads) == 0
    assert dump(db_url) == before


# --- what a folder may look like -----------------------------------------------------


def test_any_file_may_be_absent(conn: psycopg.Connection[Any], db_url: str, data_dir: Path) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, {name: rows[name] for name in ("tenants.csv", "users.csv")})

    loads = load(conn, data_dir)

    assert counts(loads) == [
        ("tenants.csv", "tenant", 2, 2, 0, 0),
        ("users.csv", "crm_user", 3, 3, 0, 0),
    ]
    loaded = dump(db_url)
    assert len(loaded["tenant"]) == 2
    assert len(loaded["crm_user"]) == 3
    assert loaded["deal"] == loaded["pipeline"] == loaded["crm_group"] == []


def test_a_single_child_file_references_rows_already_in_the_database(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Already there")
    write_csv(
        data_dir,
        "groups.csv",
        HEADERS["groups.csv"],
        [[str(uuid.uuid4()), str(tenant), "Team from CSV"]],
    )

    assert counts(load(conn, data_dir)) == [("groups.csv", "crm_group", 1, 1, 0, 0)]
    assert fetch(db_url, "SELECT tenant_id, name FROM dyno_crm.crm_group") == [
        (tenant, "Team from CSV")
    ]


def test_references_to_rows_of_the_same_import_work(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant, user, group = new_id(), new_id(), new_id()
    write_csv(data_dir, "tenants.csv", HEADERS["tenants.csv"], [[tenant, "Fresh"]])
    write_csv(data_dir, "users.csv", HEADERS["users.csv"], [[user, tenant, "Una", "", "true"]])
    write_csv(data_dir, "groups.csv", HEADERS["groups.csv"], [[group, tenant, "Crew"]])
    write_csv(data_dir, "group_members.csv", HEADERS["group_members.csv"], [[tenant, group, user]])

    loads = load(conn, data_dir)

    assert [(x.file, x.inserted) for x in loads] == [
        ("tenants.csv", 1), ("users.csv", 1), ("groups.csv", 1), ("group_members.csv", 1),
    ]  # fmt: skip
    assert fetch(db_url, "SELECT tenant_id, group_id, user_id FROM dyno_crm.group_member") == [
        (uuid.UUID(tenant), uuid.UUID(group), uuid.UUID(user))
    ]


def test_columns_in_another_order_still_load(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    # Rewrite two files with their columns reversed.
    for name in ("users.csv", "deals.csv"):
        header = HEADERS[name][::-1]
        write_csv(data_dir, name, header, [row[::-1] for row in rows[name]])
    assert (data_dir / "deals.csv").read_text(encoding="utf-8").startswith("assigned_group_id,")

    loads = load(conn, data_dir)

    assert {x.file: x.inserted for x in loads}["deals.csv"] == 4
    assert fetch_one(
        db_url, "SELECT name, email, is_active FROM dyno_crm.crm_user WHERE id = %s", [ids.bob]
    ) == ("Bob Becker", None, False)
    assert fetch_one(
        db_url,
        "SELECT name, amount, expected_close_date, owned_by_user_id, assigned_user_id"
        " FROM dyno_crm.deal WHERE id = %s",
        [ids.deal1],
    ) == ("Acme Platform", Decimal("1250.50"), dt.date(2026, 2, 15), uuid.UUID(ids.alice),
          uuid.UUID(ids.bob))  # fmt: skip


def test_a_utf8_bom_is_accepted(conn: psycopg.Connection[Any], db_url: str, data_dir: Path) -> None:
    tenant, user = new_id(), new_id()
    path = write_csv(
        data_dir, "tenants.csv", HEADERS["tenants.csv"], [[tenant, "Bömer & Söhne"]], bom=True
    )
    write_csv(
        data_dir, "users.csv", HEADERS["users.csv"], [[user, tenant, "Zoë", "", "true"]], bom=True
    )
    assert path.read_bytes().startswith(codecs.BOM_UTF8 + b"id,name\n")

    loads = load(conn, data_dir)

    assert counts(loads) == [
        ("tenants.csv", "tenant", 1, 1, 0, 0),
        ("users.csv", "crm_user", 1, 1, 0, 0),
    ]
    assert fetch(db_url, "SELECT id, name FROM dyno_crm.tenant") == [
        (uuid.UUID(tenant), "Bömer & Söhne")
    ]
    assert fetch(db_url, "SELECT id, name FROM dyno_crm.crm_user") == [(uuid.UUID(user), "Zoë")]


def test_a_header_only_file_loads_nothing(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    write_csv(data_dir, "tenants.csv", HEADERS["tenants.csv"], [])

    assert counts(load(conn, data_dir)) == [("tenants.csv", "tenant", 0, 0, 0, 0)]
    assert dump(db_url)["tenant"] == []


# --- rejected values: one bad field in an otherwise valid, complete folder ------------


@dataclass(frozen=True)
class BadValue:
    """One field of the valid data set replaced by ``value`` (``{name}`` fills in an id)."""

    file: str
    row: int
    column: str
    value: str
    reported: str  # the column the message names
    reason: str  # text the reason must contain


BAD_VALUES = [
    pytest.param(BadValue("deals.csv", 1, "owned_by_user_id", "not-a-uuid", "owned_by_user_id",
                          "not a UUID: 'not-a-uuid'"), id="bad-uuid"),
    pytest.param(BadValue("users.csv", 2, "id", "1234", "id", "not a UUID"), id="bad-uuid-key"),
    pytest.param(BadValue("deals.csv", 1, "close_date", "10/01/2026", "close_date",
                          "not a date (YYYY-MM-DD): '10/01/2026'"), id="bad-date-format"),
    pytest.param(BadValue("deals.csv", 0, "expected_close_date", "2026-02-30",
                          "expected_close_date", "not a date"), id="impossible-date"),
    pytest.param(BadValue("deals.csv", 2, "expected_close_date", "2026-13-01",
                          "expected_close_date", "not a date"), id="month-13"),
    pytest.param(BadValue("sales_targets.csv", 1, "period_start", "2025-02-29", "period_start",
                          "not a date"), id="not-a-leap-year"),
    pytest.param(BadValue("deals.csv", 1, "amount", "12,50", "amount", "not a number: '12,50'"),
                 id="bad-number"),
    pytest.param(BadValue("deals.csv", 1, "amount", "-5.00", "amount", "must be >= 0"),
                 id="negative-amount"),
    pytest.param(BadValue("sales_targets.csv", 2, "target_amount", "-0.01", "target_amount",
                          "must be >= 0"), id="negative-target"),
    pytest.param(BadValue("deals.csv", 1, "amount", "1.234", "amount", "2 decimal places"),
                 id="three-decimals"),
    pytest.param(BadValue("pipeline_stages.csv", 1, "stage_state", "OPEN", "stage_state",
                          "must be one of NOT_STARTED, IN_PROGRESS, DONE_SUCCESS, DONE_FAILED"),
                 id="bad-stage-state"),
    pytest.param(BadValue("sales_targets.csv", 0, "principal_type", "TEAM", "principal_type",
                          "must be one of USER, GROUP"), id="bad-principal-type"),
    pytest.param(BadValue("users.csv", 1, "is_active", "yes", "is_active",
                          "not true or false: 'yes'"), id="bad-boolean"),
    pytest.param(BadValue("pipeline_stages.csv", 2, "probability", "101", "probability",
                          "must be between 0 and 100"), id="probability-above-100"),
    pytest.param(BadValue("pipeline_stages.csv", 2, "probability", "-1", "probability",
                          "must be between 0 and 100"), id="probability-below-0"),
    pytest.param(BadValue("pipeline_stages.csv", 2, "position", "1.5", "position",
                          "not an integer"), id="bad-integer"),
    pytest.param(BadValue("deals.csv", 2, "name", "", "name", "required"),
                 id="missing-required-text"),
    pytest.param(BadValue("users.csv", 1, "tenant_id", "", "tenant_id", "required"),
                 id="missing-required-uuid"),
    pytest.param(BadValue("sales_targets.csv", 0, "target_amount", "", "target_amount",
                          "required"), id="missing-required-money"),
    pytest.param(BadValue("deals.csv", 1, "pipeline_id", "{tenant_a}", "pipeline_id",
                          "no pipeline {tenant_a} in tenant {tenant_a}"), id="missing-pipeline"),
    pytest.param(BadValue("deals.csv", 0, "tenant_id", "{deal1}", "tenant_id", "no tenant {deal1}"),
                 id="missing-tenant"),
    pytest.param(BadValue("deals.csv", 0, "owned_by_user_id", "{bea}", "owned_by_user_id",
                          "no user {bea} in tenant {tenant_a}"), id="user-of-another-tenant"),
    pytest.param(BadValue("deals.csv", 2, "assigned_group_id", "{west}", "assigned_group_id",
                          "no group {west}"), id="group-of-another-tenant"),
    pytest.param(BadValue("group_members.csv", 1, "user_id", "{bea}", "user_id", "no user {bea}"),
                 id="member-of-another-tenant"),
    pytest.param(BadValue("deals.csv", 0, "stage_id", "{renew_open}", "pipeline_id/stage_id",
                          "no stage of that pipeline"), id="stage-of-another-pipeline"),
    pytest.param(BadValue("deals.csv", 0, "stage_id", "{other_open}", "stage_id",
                          "no stage {other_open}"), id="stage-of-another-tenant"),
    pytest.param(BadValue("sales_targets.csv", 0, "principal_id", "{deal1}", "principal_id",
                          "no user {deal1} in tenant {tenant_a}"), id="missing-user-principal"),
    pytest.param(BadValue("sales_targets.csv", 1, "principal_id", "{alice}", "principal_id",
                          "no group {alice}"), id="user-given-as-group-principal"),
    pytest.param(BadValue("sales_targets.csv", 1, "pipeline_id", "{other}", "pipeline_id",
                          "no pipeline {other} in tenant {tenant_a}"),
                 id="target-pipeline-of-another-tenant"),
    pytest.param(BadValue("sales_targets.csv", 1, "period_end", "2026-01-01", "period_end",
                          "must be after period_start"), id="empty-period"),
    pytest.param(BadValue("sales_targets.csv", 2, "period_end", "2025-12-31", "period_end",
                          "must be after period_start"), id="period-ends-before-start"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_value_rejects_the_whole_load(
    case: BadValue, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    existing_data(conn)
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, case.file, case.row, case.column, ids.fill(case.value))
    write_folder(data_dir, rows)
    before = dump(db_url)
    assert len(before["tenant"]) == 1

    error = reject(conn, data_dir)

    prefix = f"{case.file}:{case.row + 2}: {case.reported}: "
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    assert problem.startswith(prefix), problem
    assert ids.fill(case.reason) in problem[len(prefix) :]
    assert error.total == 1
    assert str(error) == problem
    # Nothing was written, although the files loaded before the bad one were valid.
    assert dump(db_url) == before


def test_the_message_style_is_file_line_column_reason(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 1, "amount", "lots")
    write_folder(data_dir, rows)

    assert str(reject(conn, data_dir)) == "deals.csv:3: amount: not a number: 'lots'"


def test_a_rejection_rolls_back_updates_of_earlier_files(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    _, rows, before = loaded_folder(conn, db_url, data_dir)

    # Every earlier file would update or insert something; the last file has a bad row.
    rows["tenants.csv"][0][1] = "Acme Renamed"
    rows["tenants.csv"].append([new_id(), "Newcomer"])
    set_value(rows, "users.csv", 0, "email", "changed@acme.test")
    set_value(rows, "pipeline_stages.csv", 0, "probability", "60")
    set_value(rows, "deals.csv", 0, "amount", "7.00")
    set_value(rows, "sales_targets.csv", 2, "target_amount", "1.999")
    write_folder(data_dir, rows)

    error = reject(conn, data_dir)

    assert error.problems == [
        "sales_targets.csv:4: target_amount: at most 16 digits and 2 decimal places, got 1.999"
    ]
    assert dump(db_url) == before


def test_a_rejection_inside_the_callers_transaction_keeps_the_callers_work(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """In a transaction, the load is a savepoint: rejected, the caller's rows stay."""
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 0, "amount", "x")
    write_folder(data_dir, rows)
    caller_tenant = uuid.uuid4()
    conn.execute("INSERT INTO dyno_crm.tenant (id, name) VALUES (%s, 'Caller')", [caller_tenant])

    with pytest.raises(LoadError):
        load_directory(conn, data_dir)

    assert conn.info.transaction_status == TransactionStatus.INTRANS
    conn.commit()
    assert fetch(db_url, "SELECT id FROM dyno_crm.tenant") == [(caller_tenant,)]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("owned_by_user_id", "{bea}", "no user {bea} in tenant {tenant_a}"),
     ("assigned_group_id", "{west}", "no group {west} in tenant {tenant_a}"),
     ("stage_id", "{other_open}", "no stage {other_open} in tenant {tenant_a}")],
)  # fmt: skip
def test_a_bad_reference_in_an_update_rejects_the_load_and_ends_no_version(
    column: str, value: str, reason: str, conn: psycopg.Connection[Any], db_url: str,
    data_dir: Path,
) -> None:  # fmt: skip
    """The deal keys that are deferred in the schema refuse a bad row during the upsert
    of stored deals (not at commit), and the load names it; the versions the changed
    deals would have ended are not written either."""
    ids, rows, before = loaded_folder(
        conn, db_url, data_dir, dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    )
    versions = fetch(db_url, "SELECT * FROM dyno_crm.deal_version")

    set_value(rows, "deals.csv", 2, "name", "Acme Renewal, renamed")  # a valid change
    set_value(rows, "deals.csv", 0, column, ids.fill(value))
    write_folder(data_dir, rows)
    with pytest.raises(LoadError) as caught:
        load_directory(conn, data_dir, recorded_at=dt.datetime(2026, 1, 6, tzinfo=dt.UTC))

    assert caught.value.problems == [f"deals.csv:2: {column}: {ids.fill(reason)}"]
    assert dump(db_url) == before
    assert fetch(db_url, "SELECT * FROM dyno_crm.deal_version") == versions


def test_a_bad_uuid_is_named_with_every_other_bad_value_before_a_duplicate(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    """UUIDs are checked by the statements that cast them; a file with a bad one still
    gets every value problem named, in line order, and those before its duplicates."""
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, "deals.csv", 0, "amount", "lots")
    set_value(rows, "deals.csv", 2, "assigned_group_id", "not-a-uuid")
    rows["deals.csv"].append(list(rows["deals.csv"][1]))  # deal2 again: a duplicate
    write_folder(data_dir, rows)

    assert reject(conn, data_dir).problems == [
        "deals.csv:2: amount: not a number: 'lots'",
        "deals.csv:4: assigned_group_id: not a UUID: 'not-a-uuid'",
    ]


def test_a_bad_uuid_in_a_stored_deal_that_is_otherwise_unchanged_is_named(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    _, rows, before = loaded_folder(conn, db_url, data_dir)
    set_value(rows, "deals.csv", 1, "assigned_user_id", "{0000-bad}")
    write_folder(data_dir, rows)

    assert reject(conn, data_dir).problems == [
        "deals.csv:3: assigned_user_id: not a UUID: '{0000-bad}'"
    ]
    assert dump(db_url) == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [(("deals.csv", 1, "owned_by_user_id", "nope"), "deals.csv:3: owned_by_user_id: not a UUID"),
     (("deals.csv", 1, "owned_by_user_id", "{bea}"), "deals.csv:3: owned_by_user_id: no user"),
     (("deals.csv", 0, "stage_id", "{renew_open}"),
      "deals.csv:2: pipeline_id/stage_id: no stage of that pipeline"),
     (None, "deals.csv:6: tenant_id,id: duplicate key, first on line 2")],
)  # fmt: skip
def test_a_bad_file_of_an_older_export_is_named_before_the_exports_order(
    change: tuple[str, int, str, str] | None, problem: str, conn: psycopg.Connection[Any],
    data_dir: Path,
) -> None:  # fmt: skip
    """A file's own problems come before the refusal of an export older than the
    tenant's last: the checks a clean file leaves to its upsert still run first then."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    load(conn, data_dir, recorded_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    if change is None:
        rows["deals.csv"].append(list(rows["deals.csv"][0]))
    else:
        file, row, column, value = change
        set_value(rows, file, row, column, ids.fill(value))
    write_folder(data_dir, rows)

    with pytest.raises(LoadError) as caught:
        load_directory(conn, data_dir, recorded_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_a_load_in_the_callers_transaction_keeps_the_callers_pending_key_checks(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """The caller deletes a user whose deals the load then hands to another: the
    deferred key, checked at the caller's commit, holds (the load must not check the
    caller's pending rows as its own)."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    load(conn, data_dir)
    conn.execute("DELETE FROM dyno_crm.sales_target WHERE principal_id = %s", [ids.alice])
    conn.execute("DELETE FROM dyno_crm.crm_user WHERE tenant_id = %s AND id = %s",
                 [ids.tenant_a, ids.alice])  # fmt: skip
    deals = [[ids.bob if value == ids.alice else value for value in row]
             for row in rows["deals.csv"]]  # fmt: skip
    for path in data_dir.iterdir():
        path.unlink()
    write_folder(data_dir, {"deals.csv": deals})

    load_directory(conn, data_dir)
    conn.commit()
    assert fetch(db_url, "SELECT count(*) FROM dyno_crm.deal WHERE %s IN"
                 " (owned_by_user_id, assigned_user_id)", [ids.bob]) == [(2,)]  # fmt: skip


def test_rows_staged_by_a_query_with_typed_columns_get_their_reference_named(
    conn: psycopg.Connection[Any],
) -> None:
    """load_tables' ``staged`` queries may give uuid columns: a bad reference among
    them is named like any (its value shown as text)."""
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, "deals.csv", 1, "owned_by_user_id", ids.bea)  # another tenant's user
    deals = rows.pop("deals.csv")
    as_rows = {file: [(n + 2, values) for n, values in enumerate(file_rows)]
               for file, file_rows in rows.items()}  # fmt: skip
    uuids = {"id", "tenant_id", "pipeline_id", "stage_id", "owned_by_user_id",
             "assigned_user_id", "owned_by_group_id", "assigned_group_id"}  # fmt: skip

    def staged(cur: Any) -> sql.Composable:
        return sql.SQL("SELECT * FROM (VALUES {}) AS v (line, {})").format(
            sql.SQL(", ").join(
                sql.SQL("({}, {})").format(sql.Literal(n + 2), sql.SQL(", ").join(
                    sql.SQL("{}::uuid").format(sql.Literal(v or None)) if column in uuids
                    else sql.Literal(v or None)
                    for column, v in zip(HEADERS["deals.csv"], values, strict=True)))
                for n, values in enumerate(deals)),
            sql.SQL(", ").join(map(sql.Identifier, HEADERS["deals.csv"])),
        )  # fmt: skip

    with pytest.raises(LoadError) as caught:
        load_tables(conn, as_rows, columns={f: list(HEADERS[f]) for f in [*rows, "deals.csv"]},
                    staged={"deals.csv": staged})  # fmt: skip
    assert caught.value.problems == [
        f"deals.csv:3: owned_by_user_id: no user {ids.bea} in tenant {ids.tenant_a}"
    ]


def test_a_load_in_the_callers_transaction_leaves_the_deal_keys_deferred(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """The loader makes deal's deferred keys immediate for its upsert only: after it,
    loaded or rejected, the caller's transaction checks them at commit again (a user
    deleted before the deals naming it are cleared, as a tenant's cascade does)."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    conn.execute("SELECT 1")  # the caller's transaction: the loads are savepoints in it
    load_directory(conn, data_dir)
    set_value(rows, "deals.csv", 1, "owned_by_user_id", ids.bea)  # refused by the key
    write_folder(data_dir, rows)
    with pytest.raises(LoadError, match="owned_by_user_id: no user"):
        load_directory(conn, data_dir)
    assert conn.info.transaction_status == TransactionStatus.INTRANS

    # Alice owns deal1: deleting her first fails only if the key is immediate.
    conn.execute("DELETE FROM dyno_crm.crm_user WHERE tenant_id = %s AND id = %s",
                 [ids.tenant_a, ids.alice])  # fmt: skip
    conn.execute(
        "UPDATE dyno_crm.deal SET owned_by_user_id = NULL, assigned_user_id = NULL"
        " WHERE tenant_id = %s AND %s IN (owned_by_user_id, assigned_user_id)",
        [ids.tenant_a, ids.alice],
    )
    conn.commit()
    assert fetch(db_url, "SELECT id FROM dyno_crm.crm_user WHERE id = %s", [ids.alice]) == []
    assert fetch_one(db_url, "SELECT count(*) FROM dyno_crm.deal")[0] == 4


# --- rejected files and folders ------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "key_columns"),
    [("tenants.csv", "id"), ("deals.csv", "tenant_id,id"),
     ("group_members.csv", "tenant_id,group_id,user_id")],
)  # fmt: skip
def test_a_duplicate_key_names_both_lines(
    file: str, key_columns: str, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    duplicate = list(rows[file][0])
    if file == "tenants.csv":
        duplicate[0] = duplicate[0].upper()  # the same UUID, spelt differently
        duplicate[1] = "Another name"
    rows[file].append(duplicate)
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    line = len(rows[file]) + 1
    assert len(error.problems) == 1
    assert error.problems[0] == (f"{file}:{line}: {key_columns}: duplicate key, first on line 2")
    assert dump(db_url) == before


def test_a_duplicate_of_a_stored_deal_is_named_though_one_line_is_unchanged(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """The upsert leaves an unchanged row out: of a key given twice, one line may equal
    the stored deal and the other change it, and it is still a duplicate."""
    _, rows, before = loaded_folder(conn, db_url, data_dir)
    changed = list(rows["deals.csv"][0])
    changed[HEADERS["deals.csv"].index("name")] = "Acme Platform, renamed"
    rows["deals.csv"].append(changed)
    write_folder(data_dir, rows)

    assert reject(conn, data_dir).problems == [
        "deals.csv:6: tenant_id,id: duplicate key, first on line 2"
    ]
    assert dump(db_url) == before


def test_a_duplicate_is_named_before_a_bad_reference(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, "deals.csv", 2, "owned_by_user_id", ids.bea)  # refused by its key
    rows["deals.csv"].append(list(rows["deals.csv"][0]))
    write_folder(data_dir, rows)

    assert reject(conn, data_dir).problems == [
        "deals.csv:6: tenant_id,id: duplicate key, first on line 2"
    ]


def test_the_duplicate_key_message_has_single_spaces(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    tenant = new_id()
    write_csv(data_dir, "tenants.csv", HEADERS["tenants.csv"], [[tenant, "A"], [tenant, "B"]])

    assert reject(conn, data_dir).problems == ["tenants.csv:3: id: duplicate key, first on line 2"]


def test_several_bad_rows_are_all_listed_by_line(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 3, "amount", "ten")
    set_value(rows, "deals.csv", 0, "close_date", "2026-02-30")
    set_value(rows, "deals.csv", 2, "amount", "-1")
    set_value(rows, "deals.csv", 2, "name", "")
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.total == 4
    assert [problem.split(":")[:3] for problem in error.problems] == [
        ["deals.csv", "2", " close_date"],
        ["deals.csv", "4", " amount"],
        ["deals.csv", "4", " name"],
        ["deals.csv", "5", " amount"],
    ]
    lines = [int(problem.split(":")[1]) for problem in error.problems]
    assert lines == sorted(lines)
    assert str(error) == f"{error.problems[0]} (and 3 more problems)"
    assert dump(db_url) == before


def test_many_bad_rows_are_capped_and_counted(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    bad = MAX_PROBLEMS + 5
    write_csv(
        data_dir, "tenants.csv", HEADERS["tenants.csv"], [[f"bad-{n}", f"T{n}"] for n in range(bad)]
    )

    error = reject(conn, data_dir)

    assert len(error.problems) == MAX_PROBLEMS
    assert error.total == bad
    assert error.problems[0] == "tenants.csv:2: id: not a UUID: 'bad-0'"
    assert error.problems[-1].startswith(f"tenants.csv:{MAX_PROBLEMS + 1}: id: ")
    assert str(error).endswith(f"(and {bad - 1} more problems)")


MEGABYTE = 1 << 20


def test_huge_bad_values_are_echoed_cut_to_a_readable_length(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """Each echoed value is cut after SHOWN_CHARS characters, with its length."""
    assert SHOWN_CHARS == 60
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 0, "id", "x" * MEGABYTE)
    set_value(rows, "deals.csv", 1, "id", "y" * MEGABYTE)
    set_value(rows, "deals.csv", 2, "amount", "9" * MEGABYTE)
    set_value(rows, "deals.csv", 3, "amount", "-" + "9" * MEGABYTE)
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [
        f"deals.csv:2: id: not a UUID: '{'x' * 60}…' (1048576 characters)",
        f"deals.csv:3: id: not a UUID: '{'y' * 60}…' (1048576 characters)",
        "deals.csv:4: amount: at most 16 digits and 2 decimal places, got "
        f"{'9' * 60}… (1048576 characters)",
        f"deals.csv:5: amount: must be >= 0, got -{'9' * 59}… (1048577 characters)",
    ]
    assert dump(db_url) == before


def test_a_value_as_long_as_the_cut_is_echoed_whole(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    set_value(rows, "deals.csv", 0, "amount", "x" * 60)
    set_value(rows, "deals.csv", 1, "amount", "y" * 61)
    write_folder(data_dir, rows)

    assert reject(conn, data_dir).problems == [
        f"deals.csv:2: amount: not a number: '{'x' * 60}'",
        f"deals.csv:3: amount: not a number: '{'y' * 60}…' (61 characters)",
    ]


def test_a_huge_header_name_is_echoed_cut(conn: psycopg.Connection[Any], data_dir: Path) -> None:
    huge = "c" * 100_000  # Python's csv module reads fields of up to 128 KiB
    write_csv(data_dir, "tenants.csv", ("id", "name", huge, huge), [])

    assert reject(conn, data_dir).problems == [
        f"tenants.csv:1: {'c' * 60}… (100000 characters): unknown column ({TENANT_COLUMNS})",
        f"tenants.csv:1: {'c' * 60}… (100000 characters): column appears twice",
    ]


def test_an_unknown_column_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    write_csv(
        data_dir,
        "deals.csv",
        (*HEADERS["deals.csv"], "colour"),
        [[*row, "red"] for row in rows["deals.csv"]],
    )
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert len(error.problems) == 1
    assert error.problems[0].startswith("deals.csv:1: colour: unknown column (expected: id,")
    assert dump(db_url) == before


def test_a_missing_column_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    index = HEADERS["deals.csv"].index("amount")
    write_csv(
        data_dir,
        "deals.csv",
        [c for c in HEADERS["deals.csv"] if c != "amount"],
        [row[:index] + row[index + 1 :] for row in rows["deals.csv"]],
    )
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == ["deals.csv:1: amount: missing column"]
    assert dump(db_url) == before


def test_a_row_with_an_extra_field_names_its_line(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    rows["deals.csv"][1].append("surplus")
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert len(error.problems) == 1
    assert error.problems[0].startswith("deals.csv:3: malformed CSV: "), error.problems
    assert "extra data" in error.problems[0]
    assert dump(db_url) == before


def test_a_row_with_a_missing_field_names_its_line(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    rows["users.csv"][2].pop()
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems[0].startswith("users.csv:4: malformed CSV: "), error.problems
    assert "missing data" in error.problems[0]
    assert dump(db_url) == before


def test_a_header_name_with_a_space_or_an_invisible_character_is_shown_quoted(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    """`` name: unknown column`` next to ``name: missing column`` reads as a
    contradiction: the odd name is quoted, so the space (or a second BOM, a NUL) shows."""
    (data_dir / "tenants.csv").write_bytes(
        f"id, name,\ufeffcurrency,a\x00b\n{new_id()},Acme,USD,x\n".encode()
    )
    problems = reject(conn, data_dir).problems
    assert [p.split(": 3 unknown columns")[0] for p in problems if "unknown column" in p] == [
        "tenants.csv:1: ' name', '\\ufeffcurrency', 'a\\x00b'",
    ]
    assert "tenants.csv:1: name: missing column" in problems


def test_a_nul_byte_is_named_as_such(conn: psycopg.Connection[Any], data_dir: Path) -> None:
    (data_dir / "tenants.csv").write_bytes(f"id,name\n{new_id()},Ac\x00me\n".encode())
    assert reject(conn, data_dir).problems == [
        "tenants.csv:2: a NUL byte (0x00), which no text value can hold"
    ]


def test_a_quote_inside_an_unquoted_field_is_refused_not_merged(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """COPY reads a ``"`` in the middle of a field as the start of a quoted part: two
    names with inch marks would silently become one user holding both lines. The loader
    refuses the record, at its line; the same name quoted as CSV has it loads."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    users = (data_dir / "users.csv").read_text().splitlines()
    assert users[1].startswith(str(ids.alice))
    users[1] = users[1].replace("Alice Andersen", 'Dell Monitor 27" Fan')
    users[2] = users[2].replace("Bob Becker", 'Bob 32" Becker')
    (data_dir / "users.csv").write_text("\n".join(users) + "\n")
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems[0].startswith('users.csv:2: malformed CSV: a quote (") inside a field')
    assert dump(db_url) == before

    users[1] = users[1].replace('Dell Monitor 27" Fan', '"Dell Monitor 27"" Fan"')
    users[2] = users[2].replace('Bob 32" Becker', '"Bob 32"" Becker"')
    (data_dir / "users.csv").write_text("\n".join(users) + "\n")
    load_directory(conn, data_dir)
    names = dict(conn.execute("SELECT id::text, name FROM dyno_crm.crm_user").fetchall())
    conn.commit()
    assert (names[ids.alice], names[ids.bob]) == ('Dell Monitor 27" Fan', 'Bob 32" Becker')


def test_an_unclosed_quote_is_named_at_the_line_it_opens(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    users = (data_dir / "users.csv").read_text().splitlines()
    users[2] = users[2].replace("Bob Becker", '"Bob Becker')
    (data_dir / "users.csv").write_text("\n".join(users) + "\n")
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [
        "users.csv:3: malformed CSV: a quoted field that starts on this line is never closed"
    ]
    assert dump(db_url) == before


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]], eol: str = "\n") -> bytes:
    """A CSV file's bytes (UTF-8, quoting only where needed), records ended by ``eol``."""
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator=eol).writerows([header, *rows])
    return text.getvalue().encode("utf-8")


#: What the loader says about a line holding only ``\.``.
END_MARKER = (
    "malformed CSV: a line holding only \\. (the end-of-data marker of COPY) is not a record"
)


@pytest.mark.parametrize(
    ("eol", "marker", "last"),
    [
        pytest.param("\n", "\\.\n", False, id="lf"),
        pytest.param("\n", "\\.\r\n", False, id="lf-marker-with-cr"),
        pytest.param("\r\n", "\\.\r\n", False, id="crlf"),
        pytest.param("\r", "\\.\r", False, id="cr"),
        pytest.param("\n", "\\.", True, id="last-line-without-line-break"),
    ],
)
def test_a_line_holding_only_the_end_marker_is_rejected(
    eol: str, marker: str, last: bool, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """PostgreSQL 15 ends COPY at such a line (a 5-deal file loaded 2 deals, with
    success); PostgreSQL 18 reads it as a bad record. Both must reject it, located."""
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, {name: r for name, r in rows.items() if name != "deals.csv"})
    deals = [*rows["deals.csv"], [new_id(), *rows["deals.csv"][0][1:]]]
    assert len(deals) == 5
    if last:  # after the fifth deal, on line 7, with no line break after it
        content = csv_bytes(HEADERS["deals.csv"], deals, eol) + marker.encode()
        line = 7
    else:  # after the second deal: line 4
        content = (
            csv_bytes(HEADERS["deals.csv"], deals[:2], eol)
            + marker.encode()
            + csv_bytes(HEADERS["deals.csv"], deals[2:], eol).split(eol.encode(), 1)[1]
        )
        line = 4
    (data_dir / "deals.csv").write_bytes(content)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [f"deals.csv:{line}: {END_MARKER}"]
    assert dump(db_url) == before


def test_an_end_marker_early_in_a_large_file_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = [[new_id(), f"Tenant {n}"] for n in range(6_000)]
    content = csv_bytes(HEADERS["tenants.csv"], rows)
    lines = content.split(b"\n")
    (data_dir / "tenants.csv").write_bytes(b"\n".join([*lines[:10], b"\\.", *lines[10:]]))
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [f"tenants.csv:11: {END_MARKER}"]
    assert dump(db_url) == before


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_backslash_dot_inside_quotes_is_a_value(
    eol: str, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """``"\\."`` as a field, and a ``\\.`` line inside a multi-line quoted field, are data."""
    first, multi, last = new_id(), new_id(), new_id()
    multi_line = f"first{eol}\\.{eol}last"
    content = (
        csv_bytes(("name", "id"), [["Before", new_id()]], eol)
        + f'"\\.",{first}{eol}'.encode()
        + csv_bytes(("name", "id"), [[multi_line, multi], ["After", last]], eol).split(
            eol.encode(), 1
        )[1]
    )
    assert f"{eol}\\.{eol}".encode() in content  # a physical line holding only \.
    (data_dir / "tenants.csv").write_bytes(content)

    assert counts(load(conn, data_dir)) == [("tenants.csv", "tenant", 4, 4, 0, 0)]
    names = dict(fetch(db_url, "SELECT id::text, name FROM dyno_crm.tenant"))
    assert sorted(names.values()) == sorted(["Before", "\\.", multi_line, "After"])
    assert (names[first], names[multi], names[last]) == ("\\.", multi_line, "After")


@pytest.mark.parametrize(
    ("eol", "final_break", "bom"),
    [("\r\n", True, False), ("\r\n", False, True), ("\r", True, True), ("\r", False, False),
     ("\n", False, False)],
    ids=["crlf", "crlf-no-final-break-bom", "cr-bom", "cr-no-final-break", "lf-no-final-break"],
)  # fmt: skip
def test_every_line_break_style_loads_every_record(
    eol: str,
    final_break: bool,
    bom: bool,
    conn: psycopg.Connection[Any],
    db_url: str,
    data_dir: Path,
) -> None:
    """The loader counts a file's records itself and compares with what COPY read: the
    count must agree with COPY's for every line break style COPY accepts."""
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, "deals.csv", 1, "name", f"Two{eol}lines, quoted")
    for name, file_rows in rows.items():
        content = csv_bytes(HEADERS[name], file_rows, eol)
        if not final_break:
            content = content.removesuffix(eol.encode())
        (data_dir / name).write_bytes((codecs.BOM_UTF8 if bom else b"") + content)

    loads = load(conn, data_dir)

    assert [(x.file, x.rows, x.inserted) for x in loads] == [
        (name, len(file_rows), len(file_rows)) for name, file_rows in rows.items()
    ]
    assert fetch_one(db_url, "SELECT name FROM dyno_crm.deal WHERE id = %s", [ids.deal2]) == (
        f"Two{eol}lines, quoted",
    )


def test_an_unknown_file_name_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    write_csv(data_dir, "deal.csv", HEADERS["deals.csv"], rows["deals.csv"])
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert len(error.problems) == 1
    assert "deal.csv: unknown import file" in error.problems[0]
    assert "deals.csv" in error.problems[0]  # the expected names are listed
    assert dump(db_url) == before


def test_every_unknown_file_name_is_reported(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    write_csv(data_dir, "deal.csv", HEADERS["deals.csv"], rows["deals.csv"])
    write_csv(data_dir, "Users.csv", HEADERS["users.csv"], rows["users.csv"])

    error = reject(conn, data_dir)

    assert [problem.split(": ")[:2] for problem in error.problems] == [
        [str(data_dir / "Users.csv"), "unknown import file (expected"],
        [str(data_dir / "deal.csv"), "unknown import file (expected"],
    ]
    assert dump(db_url)["tenant"] == []


def test_a_folder_without_csv_files_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    (data_dir / "notes.txt").write_text("tenants go here\n", encoding="utf-8")

    error = reject(conn, data_dir)

    assert "no import files" in str(error)
    assert "tenants.csv" in str(error)
    assert dump(db_url)["tenant"] == []


def test_a_folder_that_does_not_exist_is_an_input_error(
    conn: psycopg.Connection[Any], data_dir: Path
) -> None:
    missing = data_dir / "nope"

    with pytest.raises(InputError, match="not a directory") as caught:
        load_directory(conn, missing)

    assert str(missing) in str(caught.value)


def test_a_file_that_is_not_utf8_is_rejected(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    (data_dir / "tenants.csv").write_bytes(f"id,name\n{new_id()},M\xfcller\n".encode("latin-1"))

    error = reject(conn, data_dir)

    assert error.problems[0].startswith("tenants.csv:"), error.problems
    assert dump(db_url)["tenant"] == []


@pytest.mark.parametrize("bad_line", [2, 50, 400])
def test_a_byte_that_is_not_utf8_names_its_own_line(
    bad_line: int, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """Only the header is decoded in Python: a bad byte further down, in the first 8 KB
    (lines 2 and 50) or past it (line 400), is reported on its own line."""
    lines = [b"id,name"] + [f"{new_id()},Tenant {n}".encode() for n in range(2, 420)]
    lines[bad_line - 1] = f"{new_id()},M".encode() + b"\xfc" + b"ller"  # Latin-1 "ü"
    (data_dir / "tenants.csv").write_bytes(b"\n".join(lines) + b"\n")
    assert (bad_line < 100) == (len(b"\n".join(lines[:bad_line])) < 8192)

    error = reject(conn, data_dir)

    assert len(error.problems) == 1, error.problems
    assert error.problems[0].startswith(f"tenants.csv:{bad_line}: not UTF-8 text ("), error.problems
    assert dump(db_url)["tenant"] == []


def test_a_header_that_is_not_utf8_is_line_1(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    (data_dir / "tenants.csv").write_bytes(b"id,n\xe4me\n" + f"{new_id()},A\n".encode())

    error = reject(conn, data_dir)

    assert error.problems == ["tenants.csv:1: not UTF-8 text (invalid continuation byte)"]
    assert dump(db_url)["tenant"] == []


# --- a stage that changes pipeline ---------------------------------------------------


def _moved_stage(ids: Ids, *, with_deal: bool) -> dict[str, Rows]:
    """The stage "Proposal" (used by deal1) moved from New Business to Renewals."""
    rows = valid_rows(ids)
    set_value(rows, "pipeline_stages.csv", 0, "pipeline_id", ids.renewals)
    if with_deal:
        set_value(rows, "deals.csv", 0, "pipeline_id", ids.renewals)
        return rows
    return {"pipeline_stages.csv": rows["pipeline_stages.csv"]}


def test_moving_a_stage_away_from_its_deals_writes_nothing(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    ids = Ids()
    write_folder(data_dir, valid_rows(ids))
    load(conn, data_dir)
    before = dump(db_url)
    moved = tmp_path / "moved"
    moved.mkdir()
    write_folder(moved, _moved_stage(ids, with_deal=False))

    with pytest.raises(PipelineCoverageError):
        load_directory(conn, moved)

    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert dump(db_url) == before


def test_moving_a_stage_away_from_its_deals_is_a_located_rejection(
    conn: psycopg.Connection[Any], data_dir: Path, tmp_path: Path
) -> None:
    ids = Ids()
    write_folder(data_dir, valid_rows(ids))
    load(conn, data_dir)
    moved = tmp_path / "moved"
    moved.mkdir()
    write_folder(moved, _moved_stage(ids, with_deal=False))

    error = reject(conn, moved)

    assert error.problems[0].startswith("pipeline_stages.csv:2: pipeline_id: ")


def test_moving_a_stage_together_with_its_deals_loads(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    ids = Ids()
    write_folder(data_dir, valid_rows(ids))
    load(conn, data_dir)
    moved = tmp_path / "moved"
    moved.mkdir()
    write_folder(moved, _moved_stage(ids, with_deal=True))

    loads = load(conn, moved)

    assert {x.file: x.updated for x in loads} == {name: 0 for name in LOAD_ORDER} | {
        "pipeline_stages.csv": 1, "deals.csv": 1,
    }  # fmt: skip
    assert fetch_one(
        db_url, "SELECT pipeline_id FROM dyno_crm.deal WHERE id = %s", [ids.deal1]
    ) == (uuid.UUID(ids.renewals),)


def test_a_stage_moved_with_deals_that_are_rejected_is_not_blamed(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    """deals.csv moves the deal with its stage but has a bad row: it is not written, so
    the stored deal still has the old pipeline. The stage is not blamed for that."""
    ids = Ids()
    write_folder(data_dir, valid_rows(ids))
    load(conn, data_dir)
    before = dump(db_url)
    moved = tmp_path / "moved"
    moved.mkdir()
    rows = _moved_stage(ids, with_deal=True)
    set_value(rows, "deals.csv", 3, "amount", "lots")
    write_folder(moved, rows)

    assert reject(conn, moved).problems == ["deals.csv:5: amount: not a number: 'lots'"]
    assert dump(db_url) == before


# --- every file's problems at once ---------------------------------------------------


def test_problems_of_every_file_are_reported_together(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """A bad header in users.csv, bad rows in deals.csv and sales_targets.csv: all are
    reported at once, in load order. Nothing else is: the references of deals.csv and
    sales_targets.csv to users are not checked while users.csv cannot load."""
    rows = valid_rows(Ids())
    write_folder(data_dir, rows)
    write_csv(
        data_dir,
        "users.csv",
        (*HEADERS["users.csv"], "colour"),
        [[*row, "red"] for row in rows["users.csv"]],
    )
    set_value(rows, "deals.csv", 1, "amount", "lots")
    set_value(rows, "deals.csv", 3, "close_date", "2026-02-30")
    set_value(rows, "sales_targets.csv", 2, "period_start", "01/01/2026")
    write_csv(data_dir, "deals.csv", HEADERS["deals.csv"], rows["deals.csv"])
    write_csv(
        data_dir, "sales_targets.csv", HEADERS["sales_targets.csv"], rows["sales_targets.csv"]
    )
    existing_data(conn)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [
        "users.csv:1: colour: unknown column (expected: id,tenant_id,name,email,is_active)",
        "deals.csv:3: amount: not a number: 'lots'",
        "deals.csv:5: close_date: not a date (YYYY-MM-DD): '2026-02-30'",
        "sales_targets.csv:4: period_start: not a date (YYYY-MM-DD): '01/01/2026'",
    ]
    assert error.total == 4
    assert str(error) == f"{error.problems[0]} (and 3 more problems)"
    assert dump(db_url) == before


def test_a_file_after_a_rejected_one_is_checked_against_the_tables_that_load(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """users.csv has a bad row, so no user loads. deals.csv is still checked against
    the pipelines (which load): its missing pipeline is reported. Its users are not
    checked, as every one would seem missing."""
    ids = Ids()
    rows = valid_rows(ids)
    set_value(rows, "users.csv", 2, "is_active", "yes")
    set_value(rows, "deals.csv", 1, "pipeline_id", ids.tenant_a)
    write_folder(data_dir, rows)
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert error.problems == [
        "users.csv:4: is_active: not true or false: 'yes'",
        f"deals.csv:3: pipeline_id: no pipeline {ids.tenant_a} in tenant {ids.tenant_a}",
    ]
    assert dump(db_url) == before


def test_a_malformed_file_does_not_stop_the_checks_of_the_next(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """A COPY error aborts the transaction: each file has its own savepoint."""
    rows = valid_rows(Ids())
    rows["pipelines.csv"][1].append("surplus")
    set_value(rows, "pipeline_stages.csv", 1, "stage_state", "OPEN")
    set_value(rows, "deals.csv", 2, "expected_close_date", "2026-13-01")
    write_folder(data_dir, rows)
    write_csv(data_dir, "groups.csv", ("id", "name", "tenant"), [])
    before = dump(db_url)

    error = reject(conn, data_dir)

    assert [problem.split(":")[:3] for problem in error.problems] == [
        ["groups.csv", "1", " tenant"],
        ["groups.csv", "1", " tenant_id"],
        ["pipelines.csv", "3", " malformed CSV"],
        ["pipeline_stages.csv", "3", " stage_state"],
        ["deals.csv", "4", " expected_close_date"],
    ]
    assert dump(db_url) == before


def test_the_cap_is_per_file_and_the_total_counts_all(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """A file with many problems does not hide the problems of the next one."""
    bad = MAX_PROBLEMS + 5
    rows = valid_rows(Ids())
    rows["tenants.csv"] += [[f"bad-{n}", f"T{n}"] for n in range(bad)]
    set_value(rows, "users.csv", 0, "is_active", "yes")
    set_value(rows, "users.csv", 2, "is_active", "no")
    write_folder(data_dir, rows)

    error = reject(conn, data_dir)

    assert [problem.split(":")[0] for problem in error.problems] == [
        *["tenants.csv"] * MAX_PROBLEMS, "users.csv", "users.csv",
    ]  # fmt: skip
    assert error.problems[-2:] == [
        "users.csv:2: is_active: not true or false: 'yes'",
        "users.csv:4: is_active: not true or false: 'no'",
    ]
    assert error.total == bad + 2
    assert dump(db_url)["tenant"] == []


# --- concurrent loads ----------------------------------------------------------------


def wait_until_waiting_for_a_lock(db_url: str, pid: int, thread: threading.Thread) -> None:
    """Until the server process ``pid`` waits for a lock (it is blocked, not done)."""
    deadline = time.monotonic() + 20
    while fetch_one(
        db_url, "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity"
        " WHERE pid = %s", [pid]
    ) != (True,):  # fmt: skip
        assert thread.is_alive(), "the other load ended without waiting for a lock"
        assert time.monotonic() < deadline, "the other load never waited for a lock"
        time.sleep(0.02)


def test_concurrent_loads_of_the_same_rows_in_another_order_do_not_deadlock(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    """Rows are upserted in key order, whatever their order in the file: two loads of
    the same rows take their locks in the same order, so one waits for the other.

    A loads k1 inside its own open transaction and keeps the row lock. B loads k2
    and k1, in that line order: B must block on k1 *before* it writes k2. A then
    loads k2: in line order B would hold k2 and wait for k1, A would wait for k2,
    and PostgreSQL would abort one of them ("deadlock detected")."""
    k1, k2 = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"
    folders = {}
    for name, rows in {
        "a1": [[k1, "One (A)"]],
        "a2": [[k2, "Two (A)"]],
        "b": [[k2, "Two (B)"], [k1, "One (B)"]],
    }.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        write_csv(folders[name], "tenants.csv", HEADERS["tenants.csv"], rows)

    conn.execute("SELECT 1")  # A's own transaction: the load runs in a savepoint of it
    assert counts(load_directory(conn, folders["a1"])) == [("tenants.csv", "tenant", 1, 1, 0, 0)]
    assert conn.info.transaction_status == TransactionStatus.INTRANS

    outcome: dict[str, Any] = {}
    with psycopg.connect(db_url, options="-c lock_timeout=20s") as other:

        def load_b() -> None:
            try:
                outcome["loads"] = load_directory(other, folders["b"])
            except Exception as exc:  # reported by the assertions below
                outcome["error"] = exc

        b = threading.Thread(target=load_b)
        b.start()
        try:
            wait_until_waiting_for_a_lock(db_url, other.info.backend_pid, b)
            load_directory(conn, folders["a2"])  # blocks here in line order, then deadlocks
            conn.commit()
        finally:
            conn.rollback()
            b.join(timeout=30)
        assert not b.is_alive()

    assert "error" not in outcome, outcome
    assert counts(outcome["loads"]) == [("tenants.csv", "tenant", 2, 0, 2, 0)]
    assert sorted(fetch(db_url, "SELECT id::text, name FROM dyno_crm.tenant")) == [
        (k1, "One (B)"), (k2, "Two (B)"),
    ]  # fmt: skip


# --- columns added later (SPEC.md §9): optional, and old files still load ---------------


def test_forecast_categories_and_currency_load_when_given(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    tenant_header = (*HEADERS["tenants.csv"], "currency", "fiscal_year_start_month")
    write_csv(
        data_dir,
        "tenants.csv",
        tenant_header,
        [
            [*row, "EUR" if n == 0 else "", "7" if n == 0 else ""]
            for n, row in enumerate(rows["tenants.csv"])
        ],
    )
    stage_header = (*HEADERS["pipeline_stages.csv"], "forecast_category")
    write_csv(
        data_dir,
        "pipeline_stages.csv",
        stage_header,
        [[*row, "COMMIT"] for row in rows["pipeline_stages.csv"]],
    )
    deal_header = (*HEADERS["deals.csv"], "forecast_category")
    write_csv(
        data_dir,
        "deals.csv",
        deal_header,
        [[*row, "BEST_CASE" if n == 0 else ""] for n, row in enumerate(rows["deals.csv"])],
    )
    load(conn, data_dir)

    calendars = fetch(
        db_url, "SELECT currency, fiscal_year_start_month FROM dyno_crm.tenant ORDER BY 1"
    )
    assert calendars[0] == ("EUR", 7)
    assert {month for _, month in calendars[1:]} <= {1}  # empty is January
    currencies = fetch(db_url, "SELECT currency FROM dyno_crm.tenant ORDER BY currency")
    assert currencies[0] == ("EUR",)
    assert set(currencies[1:]) <= {("USD",)}  # an empty field is the default
    assert {
        row[0] for row in fetch(db_url, "SELECT forecast_category FROM dyno_crm.pipeline_stage")
    } == {"COMMIT"}
    deal_categories = [
        row[0]
        for row in fetch(
            db_url, "SELECT forecast_category FROM dyno_crm.deal ORDER BY forecast_category"
        )
    ]
    assert deal_categories[0] == "BEST_CASE"
    assert set(deal_categories[1:]) == {None}

    # A file without the column (an old export) leaves the stored values alone.
    write_folder(data_dir, rows)
    load(conn, data_dir)
    assert fetch(db_url, "SELECT currency FROM dyno_crm.tenant ORDER BY currency")[0] == ("EUR",)
    assert {
        row[0] for row in fetch(db_url, "SELECT forecast_category FROM dyno_crm.pipeline_stage")
    } == {"COMMIT"}
    assert "BEST_CASE" in {row[0] for row in fetch(
        db_url, "SELECT forecast_category FROM dyno_crm.deal")}  # fmt: skip


def test_bad_forecast_categories_and_currencies_are_located(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    write_csv(
        data_dir,
        "tenants.csv",
        (*HEADERS["tenants.csv"], "currency"),
        [[*row, "usd"] for row in rows["tenants.csv"]][:1]
        + [[*row, ""] for row in rows["tenants.csv"][1:]],
    )
    write_csv(
        data_dir,
        "deals.csv",
        (*HEADERS["deals.csv"], "forecast_category"),
        [[*rows["deals.csv"][0], "MAYBE"]] + [[*row, ""] for row in rows["deals.csv"][1:]],
    )
    before = dump(db_url)
    error = reject(conn, data_dir)
    assert (
        "tenants.csv:2: currency: not an ISO 4217 currency code (three capital letters): "
        "'usd'" in error.problems
    )
    assert (
        "deals.csv:2: forecast_category: must be one of COMMIT, BEST_CASE, PIPELINE, "
        "OMITTED, got 'MAYBE'" in error.problems
    )
    assert dump(db_url) == before


def test_exchange_rates_load_and_bad_ones_are_located(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    header = ("tenant_id", "currency", "valid_from", "rate")
    write_csv(data_dir, "exchange_rates.csv", header, [
        [ids.tenant_a, "EUR", "2026-01-01", "1.0832"],
        [ids.tenant_a, "EUR", "2026-04-01", "1.1"],
        [ids.tenant_a, "GBP", "2026-01-01", "1.27"],
    ])  # fmt: skip
    loads = load(conn, data_dir)
    assert ("exchange_rates.csv", 3) in [(item.file, item.inserted) for item in loads]
    assert fetch(db_url, "SELECT currency, valid_from, rate FROM dyno_crm.exchange_rate"
                 " ORDER BY 1, 2") == [
        ("EUR", dt.date(2026, 1, 1), Decimal("1.08320000")),
        ("EUR", dt.date(2026, 4, 1), Decimal("1.10000000")),
        ("GBP", dt.date(2026, 1, 1), Decimal("1.27000000")),
    ]  # fmt: skip

    before = dump(db_url)
    write_csv(data_dir, "exchange_rates.csv", header, [
        [ids.tenant_a, "EUR", "2026-01-01", "0"],
        [ids.tenant_a, "eur", "2026-01-01", "1.2"],
        [ids.tenant_a, "CHF", "2026-13-01", "-1"],
        [ids.tenant_a, "CHF", "2026-01-01", "1.123456789"],
        [str(uuid.uuid4()), "CHF", "2026-02-01", "0.9"],
    ])  # fmt: skip
    problems = reject(conn, data_dir).problems
    assert "exchange_rates.csv:2: rate: must be > 0, got 0" in problems
    assert (
        "exchange_rates.csv:3: currency: not an ISO 4217 currency code (three capital letters):"
        " 'eur'" in problems
    )
    assert "exchange_rates.csv:4: valid_from: not a date (YYYY-MM-DD): '2026-13-01'" in problems
    assert "exchange_rates.csv:4: rate: must be > 0, got -1" in problems
    assert (
        "exchange_rates.csv:5: rate: at most 10 digits and 8 decimal places, got 1.123456789"
        in problems
    )
    assert dump(db_url) == before


def test_a_deal_may_name_its_currency(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    ids = Ids()
    rows = valid_rows(ids)
    write_folder(data_dir, rows)
    deal_header = (*HEADERS["deals.csv"], "currency")
    write_csv(
        data_dir,
        "deals.csv",
        deal_header,
        [[*row, "EUR" if n == 0 else ""] for n, row in enumerate(rows["deals.csv"])],
    )
    load(conn, data_dir)
    found = [row[0] for row in fetch(db_url, "SELECT currency FROM dyno_crm.deal ORDER BY 1")]
    assert found[0] == "EUR"
    assert set(found[1:]) == {None}
    write_csv(
        data_dir,
        "deals.csv",
        deal_header,
        [[*row, "euro" if n == 0 else ""] for n, row in enumerate(rows["deals.csv"])],
    )
    problems = reject(conn, data_dir).problems
    assert problems[0].startswith("deals.csv:2: currency: not an ISO 4217 currency code")
