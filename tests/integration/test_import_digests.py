"""A re-import reads in full only the rows it has not read before (SPEC.md §12, and
docs/import.md "Re-imports"): each imported deal keeps the digest of its CSV row, and
a row found among them is counted unchanged without being parsed, staged or compared.

The oracle is the import that reads every row (``--reread``): a tenant synced through
a series of changing exports with the digests must end with exactly the deals of a
tenant synced through the same exports reading every row."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage.importing import deals as deals_module
from tests.integration.test_cli import assert_one_error_line, cli
from tests.integration.test_import import imported

COLUMNS = ("Id", "Name", "Owner.Name", "StageName", "IsWon", "IsClosed", "Amount",
           "CurrencyIsoCode", "CloseDate", "ForecastCategoryName", "Probability",
           "RecordType.Name")  # fmt: skip
STAGES = (
    ("Prospecting", "false", "false", "Pipeline", "10"),
    ("Negotiation/Review", "false", "false", "Commit", "90"),
    ("Closed Won", "true", "true", "Closed", "100"),
    ("Closed Lost", "false", "true", "Omitted", "0"),
)
OWNERS = ("Ana Silva", "Ben Ode", 'Chloé "CJ" Jones', "=HYPERLINK(1)", "")


def export_row(rng: random.Random, n: int) -> list[str]:
    stage, won, closed, category, probability = rng.choice(STAGES)
    amount = rng.choice(["", "0", f"{rng.randint(1, 90_000)}.{rng.randint(0, 99):02d}"])
    return [
        f"006{n:015d}", rng.choice([f"Deal {n}", f"Deal\r\n{n}", f"Deal, {n}"]),
        rng.choice(OWNERS), stage, won, closed, amount, rng.choice(["USD", "EUR"]),
        f"2026-0{rng.randint(1, 6)}-{rng.randint(10, 28)}", category, probability,
        rng.choice(["New Business", "Renewal"]),
    ]  # fmt: skip


def write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def tenant_deals(conn: psycopg.Connection[Any], tenant: str) -> list[tuple[Any, ...]]:
    """A tenant's deals by what they say (not their ids, which the tenant derives)."""
    found = conn.execute(
        "SELECT d.name, d.amount, d.expected_close_date, d.close_date, u.name, p.name,"
        " s.name, s.stage_state, d.forecast_category, d.currency, d.import_source"
        " FROM dyno_crm.deal AS d JOIN dyno_crm.tenant AS t ON t.id = d.tenant_id"
        " JOIN dyno_crm.pipeline AS p ON p.tenant_id = d.tenant_id AND p.id = d.pipeline_id"
        " JOIN dyno_crm.pipeline_stage AS s ON s.tenant_id = d.tenant_id AND s.id = d.stage_id"
        " LEFT JOIN dyno_crm.crm_user AS u"
        "   ON u.tenant_id = d.tenant_id AND u.id = d.owned_by_user_id"
        " WHERE t.name = %s ORDER BY 1, 2",
        (tenant,),
    ).fetchall()
    conn.commit()
    return [tuple(row) for row in found]


def digests(conn: psycopg.Connection[Any], tenant: str) -> dict[str, int | None]:
    found = conn.execute(
        "SELECT d.name, d.import_digest FROM dyno_crm.deal AS d"
        " JOIN dyno_crm.tenant AS t ON t.id = d.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchall()
    conn.commit()
    return {str(name): digest for name, digest in found}


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lines of the rows read in full (parsed into a deal), import after import."""
    lines: list[int] = []
    read = deals_module.DealReader._deal

    def counting(self: Any, row: Any, digest: Any = None) -> Any:
        lines.append(row.line)
        return read(self, row, digest)

    monkeypatch.setattr(deals_module.DealReader, "_deal", counting)
    return lines


def test_a_synced_tenant_ends_as_one_that_reads_every_row(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Four exports in a row (amounts, stages, owners and names changed; deals deleted
    and added; a column the import ignores changed): after each, the tenant synced with
    digests holds exactly the deals of the tenant synced reading every row."""
    rng = random.Random(20261207)
    rows = [export_row(rng, n) for n in range(120)]
    next_key = 120
    for round_ in range(4):
        path = write(tmp_path / f"export-{round_}.csv", rows)
        full = ("--full", "--max-delete", "50") if round_ else ()
        imported(capsys, db_url, "--tenant", "Digests", "--format", "salesforce", *full,
                 str(path))  # fmt: skip
        imported(capsys, db_url, "--tenant", "Every row", "--format", "salesforce", "--reread",
                 *full, str(path))  # fmt: skip
        synced = tenant_deals(conn, "Digests")
        assert synced == tenant_deals(conn, "Every row")
        assert len(synced) == len(rows)
        # The next export: some deals change, some go, some come.
        kept = []
        for row in rows:
            roll = rng.random()
            if roll < 0.08:
                continue  # deleted in the CRM
            if roll < 0.25:
                row = export_row(rng, int(row[0][3:]))  # the same deal, other values
            elif roll < 0.3:
                row = [*row[:11], "Renewal" if row[11] != "Renewal" else "New Business"]
            kept.append(row)
        kept += [export_row(rng, next_key + n) for n in range(10)]
        next_key += 10
        rows = kept


def test_an_unchanged_row_is_counted_without_being_read(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path, parsed: list[int]
) -> None:
    rng = random.Random(7)
    rows = [export_row(rng, n) for n in range(30)]
    path = write(tmp_path / "export.csv", rows)
    first = imported(capsys, db_url, "--tenant", "Skip", "--format", "salesforce", str(path))
    assert "deals: 30 new, 0 updated, 0 unchanged, 0 deleted" in first[1]
    assert len(parsed) == 30
    stored = tenant_deals(conn, "Skip")
    assert all(digest is not None for digest in digests(conn, "Skip").values())

    parsed.clear()
    again = imported(capsys, db_url, "--tenant", "Skip", "--format", "salesforce", str(path))
    assert again[0].endswith("30 deals keyed by Id")
    assert "deals: 0 new, 0 updated, 30 unchanged, 0 deleted" in again[1]
    assert parsed == []  # not one row parsed
    assert tenant_deals(conn, "Skip") == stored

    # One amount changed: that row alone is read, and its deal changes.
    rows[4][6] = "123.45"
    write(path, rows)
    changed = imported(capsys, db_url, "--tenant", "Skip", "--format", "salesforce", str(path))
    assert "deals: 0 new, 1 updated, 29 unchanged, 0 deleted" in changed[1]
    # (its record's first line: the header is line 1, a name with a line break takes two)
    assert parsed == [2 + sum(1 + row[1].count("\n") for row in rows[:4])]
    amounts = {row[0]: row[1] for row in tenant_deals(conn, "Skip")}
    assert str(amounts[rows[4][1]]) == "123.45"

    # --reread reads every row, and finds nothing to change.
    parsed.clear()
    reread = imported(capsys, db_url, "--tenant", "Skip", "--format", "salesforce", "--reread",
                      str(path))  # fmt: skip
    assert "deals: 0 new, 0 updated, 30 unchanged, 0 deleted" in reread[1]
    assert len(parsed) == 30


def test_another_header_or_format_reads_every_row_again(
    capsys: Any, db_url: str, tmp_path: Path, parsed: list[int]
) -> None:
    rng = random.Random(8)
    rows = [export_row(rng, n) for n in range(10)]
    path = write(tmp_path / "export.csv", rows)
    imported(capsys, db_url, "--tenant", "Formats", "--format", "salesforce", str(path))
    parsed.clear()
    # The preset's own date format, given: the same format, nothing read.
    imported(capsys, db_url, "--tenant", "Formats", "--format", "salesforce",
             "--date-format", "%Y-%m-%d", str(path))  # fmt: skip
    assert parsed == []
    # Another date format: every row read (here each then fails to parse, at its line).
    refused = cli(capsys, db_url, "import", "--tenant", "Formats", "--format", "salesforce",
                  "--date-format", "%d/%m/%Y", str(path))  # fmt: skip
    assert "CloseDate" in assert_one_error_line(refused)
    assert len(parsed) == 10
    # A column more (ignored): another header, every row read, nothing changed.
    parsed.clear()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([*COLUMNS, "LeadSource"])
        writer.writerows([*row, "Web"] for row in rows)
    again = imported(capsys, db_url, "--tenant", "Formats", "--format", "salesforce", str(path))
    assert "deals: 0 new, 0 updated, 10 unchanged, 0 deleted" in again[1]
    assert len(parsed) == 10


def test_a_deal_changed_by_a_load_or_outside_is_restored(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """``load`` clears the digest of a deal it changes, so the next import restores the
    export's values; a change made outside the product keeps the digest (documented),
    and ``--reread`` restores it."""
    from pipeline_coverage.importing.load import load_tables

    rng = random.Random(9)
    rows = [export_row(rng, n) for n in range(5)]
    rows[0][6] = "1000.00"
    rows[1][6] = "2000.00"
    path = write(tmp_path / "export.csv", rows)
    imported(capsys, db_url, "--tenant", "Restore", "--format", "salesforce", str(path))
    deal = conn.execute(
        "SELECT d.id, d.tenant_id, d.pipeline_id, d.stage_id, d.name, d.expected_close_date,"
        " d.close_date, d.owned_by_user_id, d.forecast_category, d.currency"
        " FROM dyno_crm.deal AS d WHERE d.amount = 1000.00"
    ).fetchone()
    conn.commit()
    assert deal is not None
    deal_id, tenant_id, pipeline, stage, name, expected, closed, owner, category, currency = deal
    load_tables(conn, {"deals.csv": [(2, (
        deal_id, tenant_id, pipeline, stage, name, "5.00", expected, closed, owner, None, None,
        None, category, currency,
    ))]})  # fmt: skip
    conn.execute(
        "UPDATE dyno_crm.deal SET amount = 7.00 WHERE amount = 2000.00"  # outside the product
    )
    conn.commit()
    assert [d for d, in conn.execute("SELECT import_digest FROM dyno_crm.deal WHERE id = %s",
                                     (deal_id,))] == [None]  # fmt: skip
    conn.commit()

    def amounts() -> set[str]:
        return {str(row[1]) for row in tenant_deals(conn, "Restore")}

    again = imported(capsys, db_url, "--tenant", "Restore", "--format", "salesforce", str(path))
    assert "deals: 0 new, 1 updated, 4 unchanged, 0 deleted" in again[1]
    assert "1000.00" in amounts()
    assert "7.00" in amounts()
    reread = imported(capsys, db_url, "--tenant", "Restore", "--format", "salesforce",
                      "--reread", str(path))  # fmt: skip
    assert "deals: 0 new, 1 updated, 4 unchanged, 0 deleted" in reread[1]
    assert "2000.00" in amounts()
    assert "7.00" not in amounts()


@pytest.mark.parametrize("copy", ["same row", "other values"])
def test_a_key_given_twice_is_named_even_when_one_row_is_unchanged(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path, copy: str
) -> None:
    rng = random.Random(10)
    rows = [[*export_row(rng, n)[:1], f"Deal {n}", *export_row(rng, n)[2:]] for n in range(6)]
    path = write(tmp_path / "export.csv", rows)
    imported(capsys, db_url, "--tenant", "Twice", "--format", "salesforce", str(path))
    stored = tenant_deals(conn, "Twice")
    twin = list(rows[2]) if copy == "same row" else [*rows[2][:6], "99.00", *rows[2][7:]]
    write(path, [*rows, twin])
    refused = cli(capsys, db_url, "import", "--tenant", "Twice", "--format", "salesforce",
                  str(path))  # fmt: skip
    error = assert_one_error_line(refused)
    assert "appears 2 times (lines 4, 8)" in error, error
    assert tenant_deals(conn, "Twice") == stored


def test_a_workbook_keeps_no_digest_and_reimports_alike(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from openpyxl import Workbook

    rng = random.Random(11)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(COLUMNS))
    for n in range(5):
        sheet.append(export_row(rng, n))
    path = tmp_path / "export.xlsx"
    workbook.save(path)
    imported(capsys, db_url, "--tenant", "Book", "--format", "salesforce", str(path))
    again = imported(capsys, db_url, "--tenant", "Book", "--format", "salesforce", str(path))
    assert "deals: 0 new, 0 updated, 5 unchanged, 0 deleted" in again[1]
    assert set(digests(conn, "Book").values()) == {None}


def test_a_won_deal_leaves_an_open_stage_whatever_rows_are_read(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A stage the format does not map ("Contract") holds two open deals; then one is
    won in it (IsWon), then the other leaves the export. Whether the other row is read
    or not, the won deal goes to its pipeline's Won stage: the stage is stored open,
    and a re-import reads only some of its deals (so what they agree on is no guide)."""
    base = ["0", "Deal", "Ana Silva", "Contract", "false", "false", "100.00", "USD",
            "2026-02-10", "Pipeline", "", "New Business"]  # fmt: skip
    d1 = ["006000000000000001", "D1", *base[2:]]
    d2 = ["006000000000000002", "D2", *base[2:]]
    won = [*d2[:4], "true", "true", *d2[6:9], "Closed", "100", d2[11]]
    exports = [[d1, d2], [d1, won], [won]]
    for n, rows in enumerate(exports):
        path = write(tmp_path / f"contract-{n}.csv", rows)
        full = ("--full", "--max-delete", "100") if n else ()
        imported(capsys, db_url, "--tenant", "Stages read", "--format", "salesforce", *full,
                 str(path))  # fmt: skip
        imported(capsys, db_url, "--tenant", "Stages reread", "--format", "salesforce",
                 "--reread", *full, str(path))  # fmt: skip
        assert tenant_deals(conn, "Stages read") == tenant_deals(conn, "Stages reread")
        if n:
            stages = {row[0]: (row[6], row[7]) for row in tenant_deals(conn, "Stages read")}
            assert stages["D2"] == ("Won", "DONE_SUCCESS"), stages


def test_a_mapping_files_rows_are_found_from_one_process_to_the_next(tmp_path: Path) -> None:
    """The fingerprint is the same in every process (a set's order is not): a mapping
    file's unchanged rows are found by the next import, which runs in another."""
    script = (
        "import sys, uuid; from pipeline_coverage.importing.crm import row_fingerprint;"
        " from pipeline_coverage.importing.mapping import format_for;"
        " fmt = format_for(sys.argv[1], sys.argv[2]);"
        " print(row_fingerprint(uuid.UUID(int=1), 'maven', fmt, [(0, 'a')]).hex())"
    )
    mapping = Path(__file__).parent.parent.parent / "docs" / "examples" / "maven-crm.toml"
    export = Path(__file__).parent.parent / "data" / "exports" / "maven-pipeline.csv"
    found = {
        subprocess.run(
            [sys.executable, "-c", script, str(mapping), str(export)],
            check=True, capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }  # fmt: skip
    assert len(found) == 1, found


def test_reread_and_a_deleted_rep_keep_the_digests_right(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path, parsed: list[int]
) -> None:
    """``--reread`` stores every row's digest (the next import reads nothing); deleting
    a rep through the product clears its deals' digests, so the next import makes the
    rep again and gives the deals their owner back."""
    rng = random.Random(12)
    rows = [export_row(rng, n) for n in range(8)]
    for row in rows:
        row[2] = "Ana Silva"
    path = write(tmp_path / "export.csv", rows)
    imported(capsys, db_url, "--tenant", "Kept", "--format", "salesforce", "--reread", str(path))
    assert None not in digests(conn, "Kept").values()
    parsed.clear()
    imported(capsys, db_url, "--tenant", "Kept", "--format", "salesforce", str(path))
    assert parsed == []
    stored = tenant_deals(conn, "Kept")
    rep = conn.execute(
        "SELECT u.tenant_id, u.id FROM dyno_crm.crm_user AS u JOIN dyno_crm.tenant AS t"
        " ON t.id = u.tenant_id WHERE t.name = 'Kept' AND u.name = 'Ana Silva'"
    ).fetchone()
    assert rep is not None
    conn.execute("SELECT dyno_crm.delete_crm_user(%s, %s)", rep)
    conn.commit()
    assert {row[4] for row in tenant_deals(conn, "Kept")} == {None}
    again = imported(capsys, db_url, "--tenant", "Kept", "--format", "salesforce", str(path))
    assert any(line.startswith("reps created: 1 (Ana Silva)") for line in again), again
    assert tenant_deals(conn, "Kept") == stored
