"""Retention: whole runs older than the cut-off go, with their fact rows; nothing else."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from typing import Any

import psycopg
import pytest

from pipeline_coverage import (
    ValidationError,
    list_runs,
    prune_runs,
    run_pipeline_coverage_batch,
)
from pipeline_coverage.cli import main
from tests.factory import Crm, stored_runs

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))


def make_run(conn: psycopg.Connection[Any], tenant: uuid.UUID, age_days: int) -> uuid.UUID:
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1)
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = now() - make_interval(days => %s)"
        " WHERE id = %s",
        (age_days, run_id),
    )
    conn.commit()
    return run_id


@pytest.fixture
def tenants(conn: psycopg.Connection[Any]) -> tuple[uuid.UUID, uuid.UUID]:
    crm = Crm(conn)
    first, second = crm.tenant("A"), crm.tenant("B")
    for tenant in (first, second):
        crm.user(tenant, "Rep 1")
        crm.user(tenant, "Rep 2")
        crm.group(tenant, "Team")
    return first, second


def test_prune_deletes_old_runs_and_their_facts(
    conn: psycopg.Connection[Any], tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    first, second = tenants
    old = make_run(conn, first, 40)
    recent = make_run(conn, first, 5)
    other_old = make_run(conn, second, 40)
    assert stored_runs(conn) == (3, 9)

    pruned = prune_runs(conn, 30, first)
    assert (pruned.runs, pruned.fact_rows) == (1, 3)
    assert {r.run_id for r in list_runs(conn)} == {recent, other_old}
    assert stored_runs(conn) == (2, 6)

    pruned = prune_runs(conn, 30)  # every tenant
    assert (pruned.runs, pruned.fact_rows) == (1, 3)
    assert {r.run_id for r in list_runs(conn)} == {recent}
    assert old not in {r.run_id for r in list_runs(conn)}


def test_prune_rejects_bad_ages(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValidationError, match="older_than_days"):
        prune_runs(conn, -1)
    with pytest.raises(ValidationError, match="older_than_days"):
        prune_runs(conn, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="older_than_days"):
        prune_runs(conn, 3_000_000)


def test_prune_command(
    conn: psycopg.Connection[Any],
    db_url: str,
    tenants: tuple[uuid.UUID, uuid.UUID],
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_run(conn, tenants[0], 10)
    make_run(conn, tenants[0], 1)
    assert main(["--database-url", db_url, "prune", "--older-than", "7"]) == 0
    assert capsys.readouterr().out.strip() == "deleted 1 runs (3 fact rows) older than 7 days"
    assert stored_runs(conn) == (1, 3)
    assert main(["--database-url", db_url, "prune", "--older-than", "-3"]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert main(["--database-url", db_url, "prune", "--older-than", "3000000"]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert main(["--database-url", db_url, "runs", "--limit", "3000000000"]) == 2
    assert "--limit" in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stdin that is a terminal, with the answers typed in advance."""

    def isatty(self) -> bool:
        return True


def test_prune_dry_run_and_confirmation(
    conn: psycopg.Connection[Any],
    db_url: str,
    tenants: tuple[uuid.UUID, uuid.UUID],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_run(conn, tenants[0], 10)
    make_run(conn, tenants[1], 10)
    assert main(["--database-url", db_url, "prune", "--older-than", "7", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == (
        "would delete 2 runs (6 fact rows) older than 7 days"
    )
    assert stored_runs(conn) == (2, 6)

    # On a terminal it asks; "no" deletes nothing.
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    assert main(["--database-url", db_url, "prune", "--older-than", "7"]) == 0
    asked = capsys.readouterr().out
    assert "delete 2 runs (6 fact rows) older than 7 days?" in asked
    assert asked.rstrip().endswith("nothing deleted")
    assert stored_runs(conn) == (2, 6)
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    assert main(["--database-url", db_url, "prune", "--older-than", "7", "--tenant",
                 str(tenants[0])]) == 0  # fmt: skip
    assert "deleted 1 runs (3 fact rows)" in capsys.readouterr().out
    assert stored_runs(conn) == (1, 3)
    # --yes does not ask.
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    assert main(["--database-url", db_url, "prune", "--older-than", "7", "--yes"]) == 0
    assert stored_runs(conn) == (0, 0)
