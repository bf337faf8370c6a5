"""A tenant's default run options (SPEC.md §12) and its delete: every place that makes
or reads runs uses the defaults unless told otherwise, a tenant nobody changed runs as
before, and ``tenant delete`` takes every row of the tenant and none of another's."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import (
    IdempotencyConflictError,
    coverage_request,
    get_run,
    principal_history,
    run_coverage,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.apikeys import start_session
from pipeline_coverage.calibration import calibrate
from pipeline_coverage.cli import main
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.history import same_point_of_quarter
from pipeline_coverage.importing.load import load_tables
from pipeline_coverage.reports.snapshot import take_snapshots
from pipeline_coverage.sql import query
from pipeline_coverage.tenants import (
    SEED_DEFAULTS,
    RunDefaults,
    delete_tenant,
    run_defaults,
    set_run_defaults,
)
from tests.factory import Crm
from tests.worlds import Q1, World, build_world

PREFIX = "pipeline-coverage: error:"
DAY = dt.date(2026, 2, 14)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PIPELINE_COVERAGE_DATA_DIR", str(tmp_path / "embedded"))


def cli(capsys: pytest.CaptureFixture[str], db_url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", db_url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def options(conn: psycopg.Connection[Any], run_id: uuid.UUID | str | None) -> tuple[Any, ...]:
    assert run_id is not None
    p = get_run(conn, run_id).parameters
    return p["rollup"], p["target_match"], p["win_rate_lookback_days"]


def team_open(conn: psycopg.Connection[Any], run_id: uuid.UUID | str, team: uuid.UUID) -> Any:
    [row] = [r for r in get_run(conn, run_id).rows if r.principal_id == team]
    return row.open_amount


ROLLED = RunDefaults(rollup=True, target_match="within", win_rate_lookback_days=90)


# --- the defaults themselves -----------------------------------------------------------


def test_a_tenant_nobody_changed_has_the_seed_options(
    conn: psycopg.Connection[Any], world: World
) -> None:
    assert run_defaults(conn, world.tenant) == SEED_DEFAULTS == RunDefaults(False, "exact", 365)
    run_id = run_coverage(conn, coverage_request(world.tenant, *Q1)).run_id
    assert options(conn, run_id) == (False, "exact", 365)


def test_set_run_defaults_changes_what_is_given_and_checks_values(
    conn: psycopg.Connection[Any], world: World, other: World
) -> None:
    assert set_run_defaults(conn, world.tenant, rollup=True) == RunDefaults(True, "exact", 365)
    assert set_run_defaults(
        conn, world.tenant, target_match="within", win_rate_lookback_days=90
    ) == ROLLED  # fmt: skip
    assert run_defaults(conn, world.tenant) == ROLLED
    assert run_defaults(conn, other.tenant) == SEED_DEFAULTS  # another tenant's: untouched
    for bad in ({"rollup": "yes"}, {"target_match": "nearly"}, {"win_rate_lookback_days": 0},
                {"win_rate_lookback_days": 3651}):  # fmt: skip
        with pytest.raises(ValidationError):
            set_run_defaults(conn, world.tenant, **bad)
    with pytest.raises(NotFoundError):
        set_run_defaults(conn, uuid.uuid4(), rollup=True)
    with pytest.raises(NotFoundError):
        run_defaults(conn, uuid.uuid4())
    assert run_defaults(conn, world.tenant) == ROLLED


# --- runs: the library ------------------------------------------------------------------


def test_runs_use_the_defaults_unless_told_and_record_what_they_used(
    conn: psycopg.Connection[Any], world: World
) -> None:
    set_run_defaults(conn, world.tenant, **ROLLED.as_dict())
    asked = run_coverage(conn, coverage_request(world.tenant, *Q1)).run_id
    assert options(conn, asked) == (True, "within", 90)
    told = run_coverage(
        conn, coverage_request(world.tenant, *Q1, rollup=False, target_match="exact",
                               win_rate_lookback_days=365),
    ).run_id  # fmt: skip
    assert options(conn, told) == (False, "exact", 365)
    # Rolled up, the team is credited with its members' deals too.
    assert team_open(conn, asked, world.team) > team_open(conn, told, world.team)
    # One option told, the others the tenant's.
    one = run_coverage(conn, coverage_request(world.tenant, *Q1, rollup=False)).run_id
    assert options(conn, one) == (False, "within", 90)
    batch = run_pipeline_coverage_batch(conn, world.tenant, *Q1)
    assert options(conn, batch) == (True, "within", 90)


def test_the_seed_entry_point_keeps_the_seed_options(
    conn: psycopg.Connection[Any], world: World
) -> None:
    set_run_defaults(conn, world.tenant, **ROLLED.as_dict())
    seed = run_pipeline_coverage_report(conn, world.tenant, *Q1, "GROUP", world.team)
    assert options(conn, seed) == (False, "exact", 365)
    told = run_pipeline_coverage_report(conn, world.tenant, *Q1, "GROUP", world.team, rollup=True)
    assert options(conn, told) == (True, "exact", 365)


def test_an_idempotency_key_compares_the_completed_request(
    conn: psycopg.Connection[Any], world: World
) -> None:
    """Left out or given as the default it is, the request is the same; after the
    defaults changed, the same words ask for another run."""
    first = run_coverage(conn, coverage_request(world.tenant, *Q1), idempotency_key="k")
    again = run_coverage(
        conn, coverage_request(world.tenant, *Q1, rollup=False), idempotency_key="k"
    )
    assert again.replayed
    assert again.run_id == first.run_id
    set_run_defaults(conn, world.tenant, rollup=True)
    with pytest.raises(IdempotencyConflictError):
        run_coverage(conn, coverage_request(world.tenant, *Q1), idempotency_key="k")


# --- runs: the command line ------------------------------------------------------------


def test_cli_run_rollup_is_the_tenants_unless_told(
    capsys: pytest.CaptureFixture[str], db_url: str, conn: psycopg.Connection[Any], world: World
) -> None:
    base = ["run", "--tenant", world.name, "--period-start", "2026-01-01",
            "--period-end", "2026-04-01", "--all", "--format", "json"]  # fmt: skip

    def made(*extra: str) -> tuple[Any, ...]:
        code, out, err = cli(capsys, db_url, *base, *extra)
        assert code == 0, err
        return options(conn, json.loads(out)["run_id"])

    assert made() == (False, "exact", 365)  # a tenant nobody changed: as before
    assert made("--rollup") == (True, "exact", 365)
    set_run_defaults(conn, world.tenant, **ROLLED.as_dict())
    assert made() == (True, "within", 90)
    assert made("--no-rollup") == (False, "within", 90)
    assert made("--target-match", "exact", "--win-rate-lookback-days", "30") == (
        True, "exact", 30,
    )  # fmt: skip


# --- snapshots --------------------------------------------------------------------------


def test_snapshots_use_each_tenants_defaults(
    conn: psycopg.Connection[Any], world: World, other: World
) -> None:
    set_run_defaults(conn, world.tenant, rollup=True)
    taken = take_snapshots(conn, as_of=DAY)
    assert len(taken) == 4
    assert all(one.error is None for one in taken)
    made = {(one.tenant_id, one.period): options(conn, one.run_id) for one in taken}
    assert {v for (t, _), v in made.items() if t == world.tenant} == {(True, "exact", 365)}
    assert {v for (t, _), v in made.items() if t == other.tenant} == {(False, "exact", 365)}
    # The same day again: the day's runs. With other defaults: new runs, made with them.
    again = take_snapshots(conn, [world.tenant], as_of=DAY)
    assert all(one.replayed for one in again)
    set_run_defaults(conn, world.tenant, rollup=False, target_match="within")
    changed = take_snapshots(conn, [world.tenant], as_of=DAY)
    assert not any(one.replayed for one in changed)
    assert {options(conn, one.run_id) for one in changed} == {(False, "within", 365)}


# --- history and same-point -------------------------------------------------------------


def both_runs(conn: psycopg.Connection[Any], world: World) -> tuple[uuid.UUID, uuid.UUID]:
    """A rolled-up and a plain batch run of Q1, as of two days."""
    rolled = run_coverage(
        conn, coverage_request(world.tenant, *Q1, rollup=True, as_of=dt.date(2026, 2, 1))
    ).run_id
    plain = run_coverage(
        conn, coverage_request(world.tenant, *Q1, rollup=False, as_of=dt.date(2026, 2, 2))
    ).run_id
    return rolled, plain


def test_history_and_same_point_read_the_default_runs_unless_told(
    conn: psycopg.Connection[Any], world: World
) -> None:
    rolled, plain = both_runs(conn, world)

    def history(**told: Any) -> list[uuid.UUID]:
        points = principal_history(
            conn, world.tenant, "GROUP", world.team, *Q1, granularity="run", **told
        )
        return [point.run_id for point in points]

    def same_point(**told: Any) -> uuid.UUID | None:
        found = same_point_of_quarter(
            conn, world.tenant, "GROUP", world.team, quarters=1, as_of=dt.date(2026, 3, 1),
            **told,
        )  # fmt: skip
        point = found.quarters[-1].point
        return None if point is None else point.run_id

    assert history() == [plain]  # the tenant's default: no roll-up
    assert same_point() == plain
    set_run_defaults(conn, world.tenant, rollup=True)
    assert history() == [rolled]
    assert same_point() == rolled
    assert history(rollup=False) == [plain]
    assert same_point(rollup=False) == plain
    assert history(rollup="any") == [rolled, plain]
    assert same_point(rollup="any") == plain  # the latest, whatever it was made with
    assert history(target_match="within") == []
    assert history(target_match="any", rollup="any") == [rolled, plain]
    with pytest.raises(ValidationError):
        history(rollup="sometimes")
    with pytest.raises(ValidationError):
        history(target_match="nearly")


def test_cli_history_and_same_point_filters(
    capsys: pytest.CaptureFixture[str], db_url: str, conn: psycopg.Connection[Any], world: World
) -> None:
    rolled, plain = both_runs(conn, world)
    set_run_defaults(conn, world.tenant, rollup=True)
    base = ["--tenant", world.name, "--principal", f"{world.name} Team", "--format", "json"]

    def history(*extra: str) -> list[str]:
        code, out, err = cli(capsys, db_url, "history", *base, "--period", "2026-Q1",
                             "--by", "run", *extra)  # fmt: skip
        assert code == 0, err
        return [point["run_id"] for point in json.loads(out)["points"]]

    def same_point(*extra: str) -> str | None:
        code, out, err = cli(capsys, db_url, "same-point", *base, "--quarters", "1",
                             "--as-of", "2026-03-01", *extra)  # fmt: skip
        assert code == 0, err
        point = json.loads(out)["quarters"][-1]["point"]
        return None if point is None else point["run_id"]

    assert history() == [str(rolled)]
    assert same_point() == str(rolled)
    assert history("--no-rollup") == [str(plain)]
    assert same_point("--no-rollup") == str(plain)
    assert history("--any-rollup") == [str(rolled), str(plain)]
    assert same_point("--any-rollup", "--target-match", "any") == str(plain)
    code, _out, err = cli(capsys, db_url, "history", *base, "--rollup", "--any-rollup")
    assert code == 2
    assert err.startswith(PREFIX)
    assert len(err.splitlines()) == 1


# --- the API and the dashboard's session ------------------------------------------------


def test_api_uses_the_defaults_unless_told(
    api: httpx.Client, conn: psycopg.Connection[Any], world: World
) -> None:
    set_run_defaults(conn, world.tenant, rollup=True, target_match="within")
    period = {"period_start": "2026-01-01", "period_end": "2026-04-01", "as_of": "2026-02-01"}
    made = api.post("/v1/coverage-runs", json=period, headers=world.auth)
    assert made.status_code == 201, made.text
    assert options(conn, made.json()["run_id"]) == (True, "within", 365)
    told = api.post(
        "/v1/coverage-runs", json={**period, "rollup": False, "target_match": "exact"},
        headers=world.auth,
    )  # fmt: skip
    assert told.status_code == 201, told.text
    assert options(conn, told.json()["run_id"]) == (False, "exact", 365)
    null = api.post("/v1/coverage-runs", json={**period, "rollup": None}, headers=world.auth)
    assert null.json()["run"]["parameters"]["rollup"] is True  # null: the default
    assert api.post(
        "/v1/coverage-runs", json={**period, "rollup": "yes"}, headers=world.auth
    ).status_code == 422  # fmt: skip

    who = {"principal_type": "GROUP", "principal_id": str(world.team),
           "period_start": "2026-01-01", "period_end": "2026-04-01"}  # fmt: skip

    def history(**told: str) -> list[str]:
        found = api.get("/v1/coverage/history", params={**who, **told}, headers=world.auth)
        assert found.status_code == 200, found.text
        return [point["run_id"] for point in found.json()["points"]]

    rolled, plain = made.json()["run_id"], told.json()["run_id"]
    assert history() == [rolled, null.json()["run_id"]]  # the default's runs only
    assert history(rollup="false", target_match="exact") == [plain]
    assert set(history(rollup="any", target_match="any")) == {rolled, plain, null.json()["run_id"]}
    assert api.get(
        "/v1/coverage/history", params={**who, "rollup": "maybe"}, headers=world.auth
    ).status_code == 422  # fmt: skip

    point = {"principal_type": "GROUP", "principal_id": str(world.team), "quarters": "1",
             "as_of": "2026-03-01"}  # fmt: skip
    found = api.get("/v1/coverage/same-point", params=point, headers=world.auth).json()
    assert found["quarters"][-1]["point"]["run_id"] == null.json()["run_id"]
    found = api.get(
        "/v1/coverage/same-point", params={**point, "rollup": "false", "target_match": "exact"},
        headers=world.auth,
    ).json()  # fmt: skip
    assert found["quarters"][-1]["point"]["run_id"] == plain

    assert api.post("/session", json={"api_key": world.key}).status_code == 204
    session = api.get("/session").json()
    assert session["run_defaults"] == {
        "rollup": True, "target_match": "within", "win_rate_lookback_days": 365,
    }  # fmt: skip


# --- tenant settings --------------------------------------------------------------------


def test_tenant_settings_round_trip_and_bad_values(
    capsys: pytest.CaptureFixture[str], db_url: str, conn: psycopg.Connection[Any], world: World
) -> None:
    code, out, err = cli(capsys, db_url, "tenant", "settings", world.name, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == {
        "tenant_id": str(world.tenant),
        "run_defaults": {"rollup": False, "target_match": "exact", "win_rate_lookback_days": 365},
    }
    code, out, err = cli(capsys, db_url, "tenant", "settings", world.name, "--rollup",
                         "--target-match", "within", "--win-rate-lookback-days", "120")  # fmt: skip
    assert code == 0, err
    assert "rollup" in out
    assert "true" in out
    assert "within" in out
    assert "120" in out
    assert run_defaults(conn, world.tenant) == RunDefaults(True, "within", 120)
    code, out, err = cli(capsys, db_url, "tenant", "settings", str(world.tenant), "--no-rollup")
    assert code == 0, err
    assert run_defaults(conn, world.tenant) == RunDefaults(False, "within", 120)
    for bad in (
        ["--target-match", "nearly"],
        ["--win-rate-lookback-days", "0"],
        ["--win-rate-lookback-days", "many"],
        ["--rollup", "--no-rollup", "--bogus"],
    ):
        code, out, err = cli(capsys, db_url, "tenant", "settings", world.name, *bad)
        assert code == 2, (bad, err)
        assert err.startswith(PREFIX), err
        assert len(err.splitlines()) == 1, err
    code, out, err = cli(capsys, db_url, "tenant", "settings", "No Such Tenant")
    assert code == 2
    assert err.startswith(PREFIX)
    assert len(err.splitlines()) == 1
    assert run_defaults(conn, world.tenant) == RunDefaults(False, "within", 120)


# --- tenant delete ----------------------------------------------------------------------


def every_table(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class AS c"
            " WHERE c.relnamespace = 'dyno_crm'::regnamespace AND c.relkind IN ('r', 'p')"
            "   AND NOT c.relispartition AND c.relname <> 'pipeline_coverage_version'"
            " ORDER BY 1"
        ).fetchall()
    ]


def rows_of(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> dict[str, int]:
    """The tenant's rows in every table of the schema, read from the catalog (not from
    the product's own list)."""
    found = {}
    for table in every_table(conn):
        column = "id" if table == "tenant" else "tenant_id"
        [(n,)] = conn.execute(
            f"SELECT count(*) FROM dyno_crm.{table} WHERE {column} = %s",  # noqa: S608
            (tenant,),
        ).fetchall()
        found[table] = n
    conn.commit()
    return found


DEAL_COLUMNS = (
    "id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
    "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
    "assigned_group_id",
)  # fmt: skip


def full_tenant(conn: psycopg.Connection[Any], name: str) -> World:
    """A world with a row in every table: a sub-team, rates, runs with facts and
    drill-down, an idempotency key, a dashboard session, changed settings."""
    world = build_world(conn, name)
    Crm(conn).group(world.tenant, f"{name} Region", parent=world.team)
    conn.execute(
        "INSERT INTO dyno_crm.exchange_rate (tenant_id, currency, valid_from, rate)"
        " VALUES (%s, 'EUR', '2026-01-01', 1.1)",
        (world.tenant,),
    )
    conn.execute(  # a deal's recorded version
        "INSERT INTO dyno_crm.deal_version (tenant_id, deal_id, valid_from, valid_to,"
        " pipeline_id, stage_id, name, amount)"
        " SELECT d.tenant_id, d.id, NULL, '2026-01-01', d.pipeline_id, d.stage_id, d.name,"
        " d.amount FROM dyno_crm.deal AS d WHERE d.tenant_id = %s LIMIT 1",
        (world.tenant,),
    )
    conn.commit()
    # A deal's amount changed by a later export: a version of it in recorded history.
    deal = conn.execute(
        "SELECT id, tenant_id, pipeline_id, stage_id, name, amount, expected_close_date,"
        " close_date, owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id"
        " FROM dyno_crm.deal WHERE tenant_id = %s AND id = %s",
        (world.tenant, world.big_deal),
    ).fetchone()
    conn.commit()
    assert deal is not None
    changed = list(deal)
    changed[5] = (deal[5] or 0) + 1
    load_tables(conn, {"deals.csv": [(2, changed)]}, columns={"deals.csv": DEAL_COLUMNS})
    run_coverage(conn, coverage_request(world.tenant, *Q1), idempotency_key=f"{name}-1")
    run_pipeline_coverage_report(conn, world.tenant, *Q1, "USER", world.ann)
    assert start_session(conn, world.key) is not None
    calibrate(conn, world.tenant)  # (no past quarters: the fits say why there are none)
    set_run_defaults(conn, world.tenant, rollup=True)
    return world


def test_the_delete_query_counts_every_table_of_the_schema(conn: psycopg.Connection[Any]) -> None:
    """A table added to the schema must be added to what a tenant's delete accounts for."""
    counted = set(re.findall(r"SELECT '(\w+)'", query("tenants", "tenant_rows")))
    assert counted == set(every_table(conn))


def test_tenant_delete_removes_everything_of_the_tenant_and_nothing_else(
    capsys: pytest.CaptureFixture[str], db_url: str, conn: psycopg.Connection[Any]
) -> None:
    gone, kept = full_tenant(conn, "Acme"), full_tenant(conn, "Globex")
    before_gone, before_kept = rows_of(conn, gone.tenant), rows_of(conn, kept.tenant)
    assert all(before_gone.values()), before_gone  # a row in every table
    assert all(before_kept.values()), before_kept

    code, out, err = cli(capsys, db_url, "tenant", "delete", "Acme", "--dry-run")
    assert code == 0, err
    assert out.startswith(f"would delete tenant {gone.tenant}: {sum(before_gone.values())} rows")
    assert f"{before_gone['deal']} deal" in out
    assert rows_of(conn, gone.tenant) == before_gone  # nothing written

    code, out, err = cli(capsys, db_url, "tenant", "delete", "Acme", "--yes")
    assert code == 0, err
    assert out.startswith(f"deleted tenant {gone.tenant}: {sum(before_gone.values())} rows")
    assert rows_of(conn, gone.tenant) == dict.fromkeys(before_gone, 0)
    assert rows_of(conn, kept.tenant) == before_kept
    assert run_defaults(conn, kept.tenant).rollup is True
    code, out, err = cli(capsys, db_url, "tenant", "delete", "Acme", "--yes")
    assert code == 2
    assert err.startswith(PREFIX)
    assert len(err.splitlines()) == 1
    with pytest.raises(NotFoundError):
        delete_tenant(conn, gone.tenant)


class _Terminal(io.StringIO):
    """A stdin that is a terminal, with the answers typed in advance."""

    def isatty(self) -> bool:
        return True


def test_tenant_delete_asks_on_a_terminal_and_refuses_off_one_without_yes(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    conn: psycopg.Connection[Any],
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = rows_of(conn, world.tenant)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal
    code, out, err = cli(capsys, db_url, "tenant", "delete", world.name)
    assert code == 2
    assert err.startswith(PREFIX)
    assert "--yes" in err
    assert len(err.splitlines()) == 1
    assert rows_of(conn, world.tenant) == before

    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    code, out, err = cli(capsys, db_url, "tenant", "delete", world.name)
    assert code == 0
    assert f"delete tenant {world.tenant} and everything of it:" in out
    assert out.rstrip().endswith("nothing deleted")
    assert rows_of(conn, world.tenant) == before

    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    code, out, err = cli(capsys, db_url, "tenant", "delete", world.name)
    assert code == 0, err
    assert f"deleted tenant {world.tenant}" in out
    assert not any(rows_of(conn, world.tenant).values())
