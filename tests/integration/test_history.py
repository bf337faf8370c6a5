"""Recorded history (SPEC.md §13) on a real PostgreSQL: what a ``load`` or an
``import`` replaces or deletes is kept as versions of the deal over recorded time,
exports go in oldest first, and a time in the future is refused."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.test_cli import assert_one_error_line, cli
from tests.integration.test_import import EXPORTS, counts, imported

UTC = dt.UTC
T1 = dt.datetime(2026, 1, 5, 9, tzinfo=UTC)
T2 = dt.datetime(2026, 1, 12, 9, tzinfo=UTC)
T3 = dt.datetime(2026, 1, 19, 9, tzinfo=UTC)


def export(tmp_path: Path, name: str, change: Any = None) -> Path:
    text = (EXPORTS / "salesforce.csv").read_text(encoding="utf-8")
    path = tmp_path / name
    path.write_text(change(text) if change else text, encoding="utf-8")
    return path


def versions(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(deal name, from, to, amount) of every version, in order."""
    found = conn.execute(
        "SELECT v.name, v.valid_from, v.valid_to, v.amount FROM dyno_crm.deal_version AS v"
        " ORDER BY v.name, v.valid_to"
    ).fetchall()
    conn.commit()
    return found


def test_a_change_and_a_deletion_keep_what_they_replaced_from_when_it_held(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = export(tmp_path, "week1.csv")
    raised = export(tmp_path, "week2.csv", lambda t: t.replace('"120000.00"', '"130000.00"'))
    gone = export(
        tmp_path, "week3.csv",
        lambda t: "\n".join(line for line in t.replace('"120000.00"', '"130000.00"').split("\n")
                            if "Umbrella expansion" not in line),
    )  # fmt: skip
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", T1.isoformat())
    assert versions(conn) == []
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", "2026-01-08")
    assert versions(conn) == [], "an unchanged export keeps no version"
    imported(capsys, db_url, "--tenant", "Hist", str(raised), "--exported-at", T2.isoformat())
    imported(capsys, db_url, "--tenant", "Hist", "--full", "--max-delete", "50", str(gone),
             "--exported-at", T3.isoformat())  # fmt: skip
    assert versions(conn) == [
        ("Acme - 200 licenses", T1, T2, Decimal("120000.00")),
        ("Umbrella expansion", T1, T3, Decimal("9000.00")),
    ]
    stored = dict(conn.execute("SELECT d.name, d.recorded_from FROM dyno_crm.deal AS d").fetchall())
    conn.commit()
    assert stored["Acme - 200 licenses"] == T2
    assert stored["Globex renewal"] == T1
    assert "Umbrella expansion" not in stored


def test_an_older_export_after_a_newer_one_is_refused_and_nothing_is_written(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = export(tmp_path, "new.csv")
    older = export(tmp_path, "old.csv", lambda t: t.replace('"120000.00"', '"1.00"'))
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", T2.isoformat())
    before = counts(conn)
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(older),
            "--exported-at",
            T1.isoformat(),
        )
    )
    assert "--exported-at 2026-01-05 09:00:00 UTC" in line
    assert "2026-01-12 09:00:00 UTC" in line
    assert counts(conn) == before
    assert versions(conn) == []


def test_a_time_in_the_future_or_not_a_time_is_refused(
    capsys: Any, db_url: str, tmp_path: Path
) -> None:
    first = export(tmp_path, "x.csv")
    tomorrow = (dt.datetime.now(UTC) + dt.timedelta(days=1)).isoformat()
    line = assert_one_error_line(
        cli(capsys, db_url, "import", "--tenant", "Hist", str(first), "--exported-at", tomorrow)
    )
    assert "in the future" in line
    result = cli(capsys, db_url, "import", "--tenant", "Hist", str(first),
                 "--exported-at", "last tuesday")  # fmt: skip
    assert result.code == 2
    assert "not a date or time" in result.err
