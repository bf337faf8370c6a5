"""On a real Citus cluster (CITUS_DATABASE_URL: a coordinator URL, e.g.
postgresql://postgres@127.0.0.1:9700/citus): migrations and ``db distribute``, the
loader on distributed tables, runs against the oracle, prune's counts, the HTTP API,
and which statements Citus routes to one shard. Skipped without a cluster.

One fresh database per module, created on every node (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from pipeline_coverage import (
    get_run,
    prune_runs,
    run_deals,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.cli import main
from pipeline_coverage.db import migrate
from pipeline_coverage.db.distribute import run_statement_settings
from pipeline_coverage.demo import write_demo
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from pipeline_coverage.sql import query, specialized_query
from tests.conftest import serving, with_dbname
from tests.factory import random_tenant, stored_runs
from tests.integration.test_metrics import Q1, compare_drilldown, compare_row, options_for
from tests.oracle import Options, Oracle

CITUS_URL = os.environ.get("CITUS_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not CITUS_URL, reason="CITUS_DATABASE_URL is not set (a Citus coordinator URL)"
)

#: Tables that the old hand-written DDL of docs/scaling.md could distribute.
OLD_DDL = ("tenant", "crm_user", "crm_group", "group_member", "pipeline", "pipeline_stage")


def _nodes(admin: psycopg.Connection[Any]) -> list[str]:
    rows = admin.execute(
        "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND isactive"
    ).fetchall()
    return [f"postgresql://postgres@{host}:{port}" for host, port in rows]


@contextlib.contextmanager
def cluster_database(*, registered: bool = True, workers: bool = True) -> Iterator[str]:
    """A fresh database on every node of the cluster, with Citus; the coordinator
    registered and the workers added unless told otherwise."""
    assert CITUS_URL is not None
    name = f"pc_citus_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(CITUS_URL, autocommit=True) as admin:
        nodes = _nodes(admin)
        coordinator = admin.info.host, admin.info.port
        admin.execute("SET citus.enable_create_database_propagation TO on")
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_dbname(CITUS_URL, name)
    try:
        for worker in nodes:
            with psycopg.connect(with_dbname(worker, name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION citus")
            if registered:
                conn.execute("SELECT citus_set_coordinator_host(%s, %s)", coordinator)
            for worker in nodes if registered and workers else []:
                info = psycopg.conninfo.conninfo_to_dict(worker)
                conn.execute(
                    "SELECT citus_add_node(%s, %s)", (info["host"], int(str(info["port"])))
                )
        yield url
    finally:
        with psycopg.connect(CITUS_URL, autocommit=True) as admin:
            admin.execute("SET citus.enable_create_database_propagation TO on")
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def citus_url() -> Iterator[str]:
    """A fresh database on every node of the cluster, with Citus and the workers."""
    with cluster_database() as url:
        yield url


def first_user(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> tuple[uuid.UUID]:
    """The tenant's first rep (by id), as its row."""
    row = conn.execute(
        "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s ORDER BY id LIMIT 1", (tenant,)
    ).fetchone()
    assert row is not None
    return (uuid.UUID(str(row[0])),)


def first_tenant(conn: psycopg.Connection[Any]) -> uuid.UUID:
    row = conn.execute("SELECT id FROM dyno_crm.tenant ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def distribution(url: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name::text, distribution_column, colocation_id FROM citus_tables"
            " WHERE citus_table_type = 'distributed'"
        ).fetchall()
    return {table: (column, colocation) for table, column, colocation in rows}


def _function_settings(
    url: str, function: str = "dyno_crm.run_tenant_statement(uuid, text)"
) -> set[str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure", (function,)
        ).fetchone()
    assert row is not None
    return set(row[0] or [])


def test_distribute_after_a_partly_distributed_0005(
    citus_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Where the old hand-written DDL left a schema: 0005, its first tables distributed.
    migrate.upgrade(citus_url, "0005")
    with psycopg.connect(citus_url, autocommit=True) as conn:
        conn.execute("SELECT create_distributed_table('dyno_crm.tenant', 'id')")
        for table in OLD_DDL[1:]:
            conn.execute(
                "SELECT create_distributed_table(%s, 'tenant_id',"
                " colocate_with => 'dyno_crm.tenant')",
                (f"dyno_crm.{table}",),
            )
    code, out, err = cli(capsys, citus_url, "db", "upgrade")  # 0006 on distributed tables
    assert (code, err) == (0, ""), err
    code, out, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, ""), err
    found = distribution(citus_url)
    assert out.startswith(f"distributed {len(found) - len(OLD_DDL)} tables by tenant")
    assert "created dyno_crm.run_tenant_statement" in out
    with psycopg.connect(citus_url) as conn:
        routed = conn.execute(
            "SELECT o.distribution_argument_index, o.force_delegation, o.colocationid"
            " FROM pg_dist_object AS o WHERE o.classid = 'pg_proc'::regclass"
            " AND o.objid = 'dyno_crm.run_tenant_statement(uuid, text)'::regprocedure"
        ).fetchall()
    assert routed == [(0, True, found["dyno_crm.tenant"][1])]
    # The run's settings travel with the call (a SET on the coordinator would not), and
    # the call may write the tenant's shards it names.
    assert _function_settings(citus_url) == {
        "work_mem=64MB", "jit=off", "enable_sort=off", "citus.enable_manual_changes_to_shards=on"
    }  # fmt: skip
    with psycopg.connect(citus_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r'"
                " AND relnamespace = 'dyno_crm'::regnamespace"
            )
        }
    assert set(found) == tables - {"dyno_crm.pipeline_coverage_version"}
    assert len(found) >= 16  # every table of the schema, exchange rates (0008) included
    anchor = found["dyno_crm.tenant"]
    assert anchor[0] == "id"
    assert all(v == ("tenant_id", anchor[1]) for k, v in found.items() if k != "dyno_crm.tenant")

    code, out, err = cli(capsys, citus_url, "db", "distribute")  # idempotent
    assert (code, err) == (0, "")
    assert out.startswith("nothing to do")
    assert distribution(citus_url) == found
    code, out, err = cli(capsys, citus_url, "db", "upgrade")
    assert (code, err) == (0, "")
    code, out, err = cli(capsys, citus_url, "db", "status")
    assert "up to date" in out


def test_distribute_again_brings_the_run_settings_up_to_date(
    citus_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cluster distributed by an earlier version (its function without a setting the
    run now needs) gets this version's settings from another 'db distribute', on the
    coordinator and on every worker, where the delegated call runs."""
    code, _, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, "")
    with psycopg.connect(citus_url, autocommit=True) as conn:
        conn.execute("ALTER FUNCTION dyno_crm.run_tenant_statement(uuid, text) RESET enable_sort")
        workers = [with_dbname(w, conn.info.dbname) for w in _nodes(conn)]
    assert all("enable_sort=off" not in _function_settings(u) for u in [citus_url, *workers])
    code, out, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, "")
    assert out == (
        "updated dyno_crm.run_tenant_statement to this version's definition"
        " (its run settings and body)\n"
    )
    expected = {
        "work_mem=64MB", "jit=off", "enable_sort=off", "citus.enable_manual_changes_to_shards=on"
    }  # fmt: skip
    assert set(run_statement_settings()) == expected
    assert [_function_settings(u) for u in [citus_url, *workers]] == [expected] * (1 + len(workers))
    code, out, err = cli(capsys, citus_url, "db", "distribute")  # up to date: nothing to do
    assert (code, err) == (0, "")
    assert out.startswith("nothing to do")


def test_distribute_refuses_a_server_without_citus(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.upgrade(empty_db_url)
    code, _out, err = cli(capsys, empty_db_url, "db", "distribute")
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("pipeline-coverage: error: the Citus extension is not installed")


DEMO_TODAY = dt.date(2026, 2, 15)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, DEMO_TODAY, 1500)
    return folder


def test_load_into_distributed_tables(
    citus_url: str, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, citus_url, "load", str(demo_dir))
    assert (code, err) == (0, ""), err
    assert "deals.csv: 1500 rows -> deal (1500 new" in out
    code, out, err = cli(capsys, citus_url, "load", str(demo_dir))
    assert "deals.csv: 1500 rows -> deal (0 new, 0 updated, 1500 unchanged)" in out

    with psycopg.connect(citus_url) as conn:
        before = conn.execute("SELECT count(*) FROM dyno_crm.crm_user").fetchone()
    bad = tmp_path / "bad"
    bad.mkdir()
    ghost = "22222222-2222-2222-2222-222222222222"
    (bad / "users.csv").write_text(
        f"id,tenant_id,name,email,is_active\n{uuid.uuid4()},{ghost},X,,true\n"
    )
    deals = (demo_dir / "deals.csv").read_text().splitlines()
    header, first = deals[0], deals[1].split(",")
    first[0] = str(uuid.uuid4())
    first[header.split(",").index("owned_by_user_id")] = ghost
    (bad / "deals.csv").write_text(f"{header}\n{','.join(first)}\n")
    code, out, err = cli(capsys, citus_url, "load", str(bad))
    assert (code, err) == (
        2,
        f"pipeline-coverage: error: users.csv:2: tenant_id: no tenant {ghost}\n",
    )
    (bad / "users.csv").unlink()
    code, out, err = cli(capsys, citus_url, "load", str(bad))
    assert code == 2
    assert err == (
        f"pipeline-coverage: error: deals.csv:2: owned_by_user_id: no user {ghost} in tenant"
        f" {first[1]}\n"
    )
    # A bad UUID is found by the statements that cast it (on the cluster too), then named.
    first[header.split(",").index("assigned_group_id")] = "not-a-uuid"
    (bad / "deals.csv").write_text(f"{header}\n{','.join(first)}\n")
    code, out, err = cli(capsys, citus_url, "load", str(bad))
    assert (code, err) == (
        2,
        "pipeline-coverage: error: deals.csv:2: assigned_group_id: not a UUID: 'not-a-uuid'\n",
    )
    with psycopg.connect(citus_url) as conn:
        assert conn.execute("SELECT count(*) FROM dyno_crm.crm_user").fetchone() == before
        assert conn.execute(
            "SELECT count(*) FROM dyno_crm.deal WHERE id = %s", (first[0],)
        ).fetchone() == (0,)


def test_import_syncs_a_crm_export_into_distributed_tables(
    citus_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``import`` on Citus: new deals, an unchanged re-import (rows found by their
    digests), a row whose only change is a column the import ignores (its digest is
    written alone, by key), a changed amount, and a full sync that deletes."""
    exports = Path(__file__).parent.parent / "data" / "exports"
    lines = (exports / "salesforce.csv").read_text(encoding="utf-8").splitlines()
    export = tmp_path / "salesforce.csv"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def imported(*args: str) -> str:
        code, out, err = cli(capsys, citus_url, "import", "--tenant", "Citus import",
                             "--format", "salesforce", *args, str(export))  # fmt: skip
        assert (code, err) == (0, ""), err
        return out.splitlines()[1]

    def digests() -> dict[str, int | None]:
        with psycopg.connect(citus_url) as conn:
            rows = conn.execute(
                "SELECT d.name, d.import_digest FROM dyno_crm.deal AS d JOIN dyno_crm.tenant"
                " AS t ON t.id = d.tenant_id WHERE t.name = 'Citus import'"
            ).fetchall()
        return {str(name): digest for name, digest in rows}

    assert imported() == "deals: 4 new, 0 updated, 0 unchanged, 0 deleted"
    assert imported() == "deals: 0 new, 0 updated, 4 unchanged, 0 deleted"
    before = digests()
    assert None not in before.values()
    export.write_text("\n".join(lines).replace('"Web"', '"Webinar"') + "\n", encoding="utf-8")
    assert imported() == "deals: 0 new, 0 updated, 4 unchanged, 0 deleted"
    after = digests()
    webbed = {line.split(",")[1].strip('"') for line in lines if '"Web"' in line}
    assert {name for name in before if before[name] != after[name]} == webbed
    export.write_text("\n".join(lines[:3]).replace("120000.00", "120001.00") + "\n",
                      encoding="utf-8")  # fmt: skip
    assert imported("--full", "--max-delete", "50") == (
        "deals: 0 new, 1 updated, 1 unchanged, 2 deleted"
    )


@pytest.mark.parametrize("mode", ["plain", "within", "pipeline", "by_pipeline", "rollup"])
def test_batch_and_single_runs_match_the_oracle(citus_url: str, mode: str) -> None:
    with psycopg.connect(citus_url) as conn:
        tenant = random_tenant(conn, 40 + len(mode), deals=150)
        conn.commit()
        oracle = Oracle(conn, tenant)
        base = options_for(mode)
        pipeline = sorted(oracle.pipelines)[0] if mode == "pipeline" else None
        options = Options(
            base.start, base.end, pipeline, by_pipeline=mode == "by_pipeline",
            as_of=base.as_of, target_match=base.target_match, lookback_days=base.lookback_days,
            rollup=base.rollup,
        )  # fmt: skip
        request = coverage_request(
            tenant, *Q1, pipeline_id=pipeline, by_pipeline=options.by_pipeline,
            as_of=options.as_of, target_match=options.target_match,
            win_rate_lookback_days=options.lookback_days, rollup=options.rollup,
        )  # fmt: skip
        run = get_run(conn, run_coverage(conn, request).run_id, tenant)
        expected = {
            (kind, who, bucket)
            for kind, who in oracle.run_principals(options)
            for bucket in oracle.buckets(options)
        }
        assert {(r.principal_type, r.principal_id, r.pipeline_id) for r in run.rows} == expected
        for row in run.rows:
            compare_row(oracle, options, row)
        compare_drilldown(conn, oracle, options, run.run_id)
        if mode == "by_pipeline":
            return
        for kind, who in sorted(oracle.run_principals(options))[:4]:  # single reports
            single = coverage_request(
                tenant, *Q1, principal_type=kind, principal_id=who, pipeline_id=pipeline,
                as_of=options.as_of, target_match=options.target_match,
                win_rate_lookback_days=options.lookback_days, rollup=options.rollup,
            )  # fmt: skip
            [row] = get_run(conn, run_coverage(conn, single).run_id, tenant).rows
            compare_row(oracle, options, row)


def test_prune_counts_runs_and_fact_rows(
    citus_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(citus_url) as conn:
        runs, facts = stored_runs(conn)
        assert runs > 0
        assert facts > 0
        tenant = first_tenant(conn)
        run_pipeline_coverage_batch(conn, tenant, *Q1)
        mine = conn.execute(
            "SELECT count(DISTINCT r.id), count(f.run_id) FROM dyno_crm.report_run AS r"
            " LEFT JOIN dyno_crm.report_pipeline_coverage_fact AS f"
            "   ON f.tenant_id = r.tenant_id AND f.run_id = r.id WHERE r.tenant_id = %s",
            (tenant,),
        ).fetchone()
        conn.commit()
        total = stored_runs(conn)
        pruned = prune_runs(conn, 0, tenant)
        assert (pruned.runs, pruned.fact_rows) == mine
        assert stored_runs(conn) == (total[0] - mine[0], total[1] - mine[1])
    code, out, err = cli(capsys, citus_url, "prune", "--older-than", "0")
    assert (code, err) == (0, "")
    rest = (total[0] - mine[0], total[1] - mine[1])
    assert f"deleted {rest[0]} runs ({rest[1]} fact rows)" in out
    with psycopg.connect(citus_url) as conn:
        assert stored_runs(conn) == (0, 0)
        for table in ("report_run_deals", "report_run_credit"):
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM dyno_crm.{}").format(sql.Identifier(table))
            ).fetchone()
            assert count == (0,), table


def test_a_daily_snapshot_builds_on_the_last_and_prune_keeps_it_whole(citus_url: str) -> None:
    """Migration 0017 on a cluster: a batch after a few changes stores its chunks as what
    changed since the previous batch (its drill-down equal to the oracle's), and a prune
    of every tenant that deletes that base stores the run that stays complete and drops
    it from the next run's chain."""
    with psycopg.connect(citus_url) as conn:
        tenant = random_tenant(conn, 90, deals=300)
        conn.commit()
        options = options_for("plain")
        first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=options.as_of)
        conn.execute(
            "UPDATE dyno_crm.deal SET amount = COALESCE(amount, 0) + 7"
            " WHERE tenant_id = %s AND id IN (SELECT id FROM dyno_crm.deal"
            " WHERE tenant_id = %s ORDER BY id LIMIT 3)",
            (tenant, tenant),
        )
        conn.commit()
        second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=options.as_of)
        based = conn.execute(
            "SELECT count(*) FILTER (WHERE base_run_id = %s), count(*)"
            " FROM dyno_crm.report_run_deals WHERE tenant_id = %s AND run_id = %s",
            (first, tenant, second),
        ).fetchone()
        conn.commit()
        assert based is not None
        assert based[0] > 0
        compare_drilldown(conn, Oracle(conn, tenant), options, second)
        third = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=options.as_of)
        before = run_deals(conn, second, tenant)

        def credit_chains() -> list[Any]:
            found = conn.execute(
                "SELECT credit_chain FROM dyno_crm.report_run WHERE tenant_id = %s"
                " AND id = ANY (%s) ORDER BY generated_at",
                (tenant, [second, third]),
            ).fetchall()
            conn.commit()
            return [row[0] for row in found]

        # (no one's credited deals changed: the credit rows build on the last run too)
        assert credit_chains() == [[first], [first, second]]
        assert run_deals(conn, third, tenant) == before
        month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        conn.execute(
            "UPDATE dyno_crm.report_run SET generated_at = %s WHERE tenant_id = %s AND id = %s",
            (month_ago, tenant, first),
        )
        conn.commit()
        assert prune_runs(conn, 10).runs >= 1  # every tenant's
        complete = conn.execute(
            "SELECT bool_and(base_run_id IS NULL) FROM dyno_crm.report_run_deals"
            " WHERE tenant_id = %s AND run_id = %s",
            (tenant, second),
        ).fetchone()
        conn.commit()
        assert complete == (True,)
        assert run_deals(conn, second, tenant) == before
        chains = conn.execute(
            "SELECT DISTINCT chain FROM dyno_crm.report_run_deals"
            " WHERE tenant_id = %s AND run_id = %s",
            (tenant, third),
        ).fetchall()
        conn.commit()
        assert chains == [([second],)]
        assert run_deals(conn, third, tenant) == before
        assert credit_chains() == [None, [second]]
        # (the module's later tests read the first tenant by id, which this one may be)
        conn.execute("DELETE FROM dyno_crm.tenant WHERE id = %s", (tenant,))
        conn.commit()


def test_http_api(citus_url: str, web_settings: Any) -> None:
    from pipeline_coverage.web.app import create_app

    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        _, secret = create_api_key(conn, tenant, "citus")
        conn.commit()
        oracle = Oracle(conn, tenant)
    auth = {"Authorization": f"Bearer {secret}"}
    period = {"period_start": "2026-01-01", "period_end": "2026-04-01"}
    with (
        serving(create_app(citus_url, web_settings)) as base,
        httpx.Client(base_url=base, timeout=30) as api,
    ):
        created = api.post(
            "/v1/coverage-runs", json=period, headers={**auth, "Idempotency-Key": "k1"}
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        again = api.post(
            "/v1/coverage-runs", json=period, headers={**auth, "Idempotency-Key": "k1"}
        )
        assert again.json()["run_id"] == run_id
        listed = api.get("/v1/coverage-runs", headers=auth)
        assert [item["run_id"] for item in listed.json()["items"]] == [run_id]
        shown = api.get(f"/v1/coverage-runs/{run_id}", headers=auth)
        assert shown.status_code == 200
        options = Options(*Q1, as_of=dt.date.today())
        rows = shown.json()["rows"]
        assert {(r["principal_type"], uuid.UUID(r["principal_id"])) for r in rows} == (
            oracle.run_principals(options)
        )
        assert (
            api.get("/v1/coverage-runs", headers={"Authorization": "Bearer x"}).status_code == 401
        )


def _task_counts(conn: psycopg.Connection[Any], text: str, params: dict[str, Any]) -> list[int]:
    with conn.cursor() as cur:
        # Client-side binding: Citus plans a parameterised EXPLAIN generically.
        client = psycopg.ClientCursor(conn)
        rows = client.execute("EXPLAIN " + text, params).fetchall()
        cur.close()
    plan = "\n".join(row[0] for row in rows)
    assert "Custom Scan (Citus" in plan, plan
    return [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]


def _coverage_params(tenant: uuid.UUID) -> dict[str, Any]:
    return {
        "tenant_id": str(tenant), "principal_type": None, "principal_id": None,
        "pipeline_id": None, "run_id": str(uuid.uuid4()), "period_start": Q1[0],
        "period_end": Q1[1], "history_start": Q1[0] - dt.timedelta(days=365),
        "by_pipeline": False, "rollup": False, "tree": "[]", "as_of": Q1[0],
        "target_match": "exact", "currency": "USD", "rates": "{}", "recorded_at": None,
        "calibration": "[]",
    }  # fmt: skip


READS = ["get_run", "get_run_rows", "run_exclusions", "run_deals", "list_runs",
         "prune_rebase", "prune_trim_chains", "prune_rebase_credits",
         "prune_drop_removed_credits", "prune_complete_credits", "prune_trim_credit_chains",
         "prune_facts", "prune_runs"]  # fmt: skip


@pytest.mark.parametrize("name", READS)
def test_per_tenant_statements_are_router_queries(citus_url: str, name: str) -> None:
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        params = {
            "tenant_id": str(tenant), "run_id": str(uuid.uuid4()), "report_type":
            "PIPELINE_COVERAGE", "period_start": None, "period_end": None, "mode": None,
            "before_at": None, "before_id": None, "limit": 10, "principal_type": None,
            "principal_id": None, "after_type": None, "after_principal": None,
            "after_pipeline": None, "after_deal": None, "older_than_days": 0,
            "cutoff": dt.datetime.now(dt.UTC),
        }  # fmt: skip
        # (as the product sends it: one tenant's list without the every-tenant branch)
        text = (
            specialized_query("runs", name, every_tenant=False)
            if name == "list_runs"
            else query("runs", name)
        )
        assert _task_counts(conn, text, params) == [1]
        assert _task_counts(conn, query("coverage", "check_scope"), _coverage_params(tenant)) == [1]
        conn.rollback()


#: The directory's look-ups within one tenant (names of its reps, teams, pipelines).
TENANT_LOOKUPS = ["list_principals", "principal_name", "find_principals", "find_pipelines",
                  "tenant_calendar", "known_periods"]  # fmt: skip


@pytest.mark.parametrize("name", TENANT_LOOKUPS)
def test_a_tenants_name_lookups_are_router_queries(citus_url: str, name: str) -> None:
    """One task on the tenant's worker: they answer while another worker is down (a
    rep's name given to 'run --principal', the candidates listed when none matches)."""
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        params = {
            "tenant_id": str(tenant), "kind": None, "text": "Rep", "id": str(uuid.uuid4()),
            "as_of": Q1[0], "today": Q1[0], "limit": 10,
        }  # fmt: skip
        assert _task_counts(conn, query("directory", name), params) == [1]
        conn.rollback()


def _tenant_worker(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> str:
    """``host:port`` of the worker that holds the tenant's shards."""
    row = conn.execute(
        "SELECT nodename || ':' || nodeport FROM citus_shards"
        " WHERE shardid = get_shard_id_for_distribution_column('dyno_crm.tenant', %s)",
        (tenant,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_the_run_statement_is_one_task_on_the_tenants_worker(citus_url: str) -> None:
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        statement = psycopg.ClientCursor(conn).mogrify(
            query("coverage", "insert_coverage"), _coverage_params(tenant)
        )
        counts = _task_counts(
            conn,
            query("citus", "run_tenant_statement"),
            {"tenant_id": str(tenant), "statement": statement},
        )
        conn.rollback()
    assert counts == [1]


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_a_run_talks_to_one_worker_without_two_phase_commit(citus_url: str, mode: str) -> None:
    # What the coordinator sends while the library makes a run, as Citus logs it: one
    # connection to the worker holding the tenant, the run's statement as one call,
    # and a one-node commit (a statement pulled through the coordinator would show
    # as reads of its pieces and writes of intermediate results, possibly on both).
    sent: list[tuple[str, str]] = []
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        worker = _tenant_worker(conn, tenant)
        user = first_user(conn, tenant)
        conn.execute("SET citus.log_remote_commands TO on")
        conn.commit()
        conn.add_notice_handler(
            lambda notice: sent.append((notice.message_primary or "", notice.message_detail or ""))
        )
        principal = ("USER", user[0]) if mode == "single" else (None, None)
        request = coverage_request(tenant, *Q1, *principal)
        run = get_run(conn, run_coverage(conn, request).run_id, tenant)
    commands = [(text, detail) for text, detail in sent if text.startswith("issuing ")]
    assert commands, sent
    assert {re.sub(r".*@([^ ]+) .*", r"\1", detail) for _, detail in commands} == {worker}
    assert len({re.sub(r".*connectionId: ", "", detail) for _, detail in commands}) == 1
    texts = [text for text, _ in commands]
    # A single report's statement goes prepared (run_tenant_prepared), a batch's as text.
    function = "run_tenant_prepared" if mode == "single" else "run_tenant_statement"
    assert sum(f"SELECT dyno_crm.{function}(" in text for text in texts) == 1
    assert sum("SELECT dyno_crm.run_tenant_" in text for text in texts) == 1
    assert not [text for text in texts if "PREPARE TRANSACTION" in text]
    assert not [text for text in texts if "intermediate_result" in text]
    assert texts[-1] == "issuing COMMIT"
    assert run.rows
    if mode == "single":
        assert [(r.principal_type, r.principal_id) for r in run.rows] == [("USER", user[0])]


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_on_the_tenants_worker_a_run_sends_nothing_to_another_node(
    citus_url: str, mode: str
) -> None:
    """What the tenant's worker itself sends while it runs the statement (Citus logs it
    there when the function says so, and passes the notices back): nothing — no
    intermediate result copied to another node, no loopback connection, no two-phase
    commit. (Before, each run copied its CTEs' results to the other worker and the
    coordinator and committed with all three by PREPARE TRANSACTION.)"""
    sent: list[tuple[str, str]] = []
    function = (
        "dyno_crm.run_tenant_prepared(uuid, text, text, text)"
        if mode == "single"
        else "dyno_crm.run_tenant_statement(uuid, text)"
    )
    with psycopg.connect(citus_url, autocommit=True) as conn:
        tenant = first_tenant(conn)
        user = first_user(conn, tenant)
        conn.execute(f"ALTER FUNCTION {function} SET citus.log_remote_commands = on")
        try:
            conn.autocommit = False
            conn.add_notice_handler(
                lambda notice: sent.append(
                    (notice.message_primary or "", notice.message_detail or "")
                )
            )
            principal = ("USER", user[0]) if mode == "single" else (None, None)
            run = get_run(conn, run_coverage(conn, coverage_request(tenant, *Q1, *principal))
                          .run_id, tenant)  # fmt: skip
            conn.commit()
        finally:
            conn.rollback()
            conn.autocommit = True
            conn.execute(f"ALTER FUNCTION {function} RESET citus.log_remote_commands")
    assert run.rows
    issued = [text for text, _ in sent if text.startswith("issuing ")]
    # The coordinator's own commands (to the tenant's worker) are not logged here (its
    # session does not log them); what is logged comes from the worker's statement.
    assert issued == [], issued


def test_a_tenants_run_needs_no_other_worker(
    citus_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch and a single report of a tenant while every other worker refuses
    connections (its database closed to them): both run, on the tenant's worker."""
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        worker = _tenant_worker(conn, tenant)
        user = first_user(conn, tenant)
        others = [
            f"{host}:{port}"
            for host, port in conn.execute(
                "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0"
            ).fetchall()
            if f"{host}:{port}" != worker
        ]
    assert others
    name = psycopg.conninfo.conninfo_to_dict(citus_url)["dbname"]

    def allow(flag: bool) -> None:
        for node in others:
            host, port = node.rsplit(":", 1)
            with psycopg.connect(host=host, port=int(port), user="postgres", dbname="postgres",
                                 autocommit=True) as admin:  # fmt: skip
                admin.execute("SET citus.enable_ddl_propagation TO off")  # (on this node only)
                admin.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                        sql.Identifier(str(name)), sql.SQL("true" if flag else "false")
                    )
                )
                if not flag:  # (and the connections Citus keeps open go)
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
                    )  # fmt: skip

    allow(False)
    try:
        with psycopg.connect(citus_url) as conn:
            batch = get_run(conn, run_coverage(conn, coverage_request(tenant, *Q1)).run_id,
                            tenant)  # fmt: skip
            single = get_run(
                conn,
                run_coverage(conn, coverage_request(tenant, *Q1, "USER", user[0])).run_id,
                tenant,
            )
        # What needs every node (the list of every tenant) names the node it missed.
        code, out, err = cli(capsys, citus_url, "tenants")
    finally:
        allow(True)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert any(f"the Citus node {node} cannot be reached" in err for node in others), err
    assert batch.rows
    assert [(r.principal_type, r.principal_id) for r in single.rows] == [("USER", user[0])]


def test_psycopg2_runs_route_too(citus_url: str) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        mine = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=Q1[0]), tenant)
    other = psycopg2.connect(citus_url)
    try:
        theirs = get_run(
            other, run_pipeline_coverage_batch(other, tenant, *Q1, as_of=Q1[0]), tenant
        )
    finally:
        other.close()
    assert theirs.rows
    assert list(theirs.rows) == list(mine.rows)
    # A single report too, prepared on the worker (run_tenant_prepared) whatever the
    # driver: psycopg2's values quoted into its arguments.
    with psycopg.connect(citus_url) as conn:
        user = first_user(conn, tenant)
        mine = get_run(
            conn, run_pipeline_coverage_report(conn, tenant, *Q1, "USER", user[0], as_of=Q1[0]),
            tenant,
        )  # fmt: skip
    other = psycopg2.connect(citus_url)
    try:
        cur = other.cursor()
        cur.execute("SET citus.log_remote_commands TO on")
        other.commit()
        single = run_pipeline_coverage_report(other, tenant, *Q1, "USER", user[0], as_of=Q1[0])
        sent = [notice for notice in other.notices if "run_tenant_prepared(" in notice]
        theirs = get_run(other, single, tenant)
    finally:
        other.close()
    assert sent
    assert list(theirs.rows) == list(mine.rows)


def test_one_transaction_may_run_tenants_of_different_workers(citus_url: str) -> None:
    # A delegated call pins its tenant for the call only: the caller's transaction
    # goes on to other tenants, on other workers (committed with two-phase commit).
    with psycopg.connect(citus_url) as conn:
        by_worker: dict[str, uuid.UUID] = {}
        for (tenant,) in conn.execute("SELECT id FROM dyno_crm.tenant ORDER BY id").fetchall():
            by_worker.setdefault(_tenant_worker(conn, tenant), tenant)
        conn.commit()
        assert len(by_worker) == 2, "the module's tenants should span both workers"
        alone = {}
        for tenant in by_worker.values():  # each run in a transaction of its own
            run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=Q1[0])
            alone[tenant] = get_run(conn, run_id, tenant).rows
            conn.commit()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute("SELECT 1")  # the caller's transaction: the runs below share it
        together = [run_pipeline_coverage_batch(conn, t, *Q1, as_of=Q1[0]) for t in alone]
        conn.commit()
        for tenant, run_id in zip(alone, together, strict=True):
            assert get_run(conn, run_id, tenant).rows == alone[tenant]


def test_distribute_says_what_the_cluster_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    """A coordinator not registered yet is not called a worker, and a cluster without
    workers is said to lack them (exit 1), each with what to do."""
    with cluster_database(registered=False) as url:
        assert cli(capsys, url, "db", "upgrade")[0] == 0
        code, out, err = cli(capsys, url, "db", "distribute")
        assert (code, out) == (2, "")
        assert "lists no node" in err
        assert "citus_set_coordinator_host" in err
        assert "Traceback" not in err
    with cluster_database(workers=False) as url:
        assert cli(capsys, url, "db", "upgrade")[0] == 0
        code, out, err = cli(capsys, url, "db", "distribute")
        assert (code, out) == (1, "")
        assert "no active worker" in err
        assert "citus_add_node" in err
        assert "replication_factor" not in err


def test_distributing_a_database_that_holds_data_leaves_no_local_copy(
    demo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing plain database distributed in place: every row in the shards, none
    left in the coordinator's own tables, and runs as before."""
    tables = ["tenant", "crm_user", "deal", "sales_target", "pipeline_stage"]
    # Each table's rows (through Citus once distributed) and its local table's size.
    sizes = (
        "SELECT t, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c"
        " FROM dyno_crm.%%I', t), false, true, '')))[1]::text::bigint,"
        " pg_relation_size(('dyno_crm.' || t)::regclass) FROM unnest(%s::text[]) AS t"
    )
    with cluster_database() as url:
        assert cli(capsys, url, "db", "upgrade")[0] == 0
        assert cli(capsys, url, "load", str(demo_dir))[0] == 0
        with psycopg.connect(url) as conn:
            before = conn.execute(sizes, (tables,)).fetchall()
        assert all(rows > 0 and size > 0 for _, rows, size in before), before
        code, _, err = cli(capsys, url, "db", "distribute")
        assert (code, err) == (0, ""), err
        with psycopg.connect(url) as conn:
            after = conn.execute(sizes, (tables,)).fetchall()
        assert [(t, rows) for t, rows, _ in after] == [(t, rows) for t, rows, _ in before]
        assert [size for _, _, size in after] == [0] * len(tables)
        period = ("--period-start", str(Q1[0]), "--period-end", str(Q1[1]))
        code, _, err = cli(capsys, url, "run", "--tenant", "Northwind Traders (demo)", "--all",
                           *period)  # fmt: skip
        assert (code, err) == (0, ""), err


PREPARED = "dyno_crm.run_tenant_prepared(uuid, text, text, text)"


def test_a_cluster_distributed_before_the_prepared_function_gets_it(
    citus_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where an earlier version distributed the database (run_tenant_statement only),
    a single report still runs, its statement sent as text; another 'db distribute'
    creates run_tenant_prepared on every node, and the single report then goes
    prepared, with the same numbers."""
    code, _, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, "")
    with psycopg.connect(citus_url, autocommit=True) as conn:
        conn.execute(f"DROP FUNCTION {PREPARED}")
        workers = [with_dbname(w, conn.info.dbname) for w in _nodes(conn)]
        tenant = first_tenant(conn)
        user = first_user(conn, tenant)
    sent: list[str] = []

    def single_run() -> list[Any]:
        with psycopg.connect(citus_url) as conn:
            conn.execute("SET citus.log_remote_commands TO on")
            conn.commit()
            conn.add_notice_handler(lambda notice: sent.append(notice.message_primary or ""))
            request = coverage_request(tenant, *Q1, "USER", user[0], as_of="2026-02-01")
            run = get_run(conn, run_coverage(conn, request).run_id, tenant)
        return list(run.rows)

    as_text = single_run()
    assert sum("SELECT dyno_crm.run_tenant_statement(" in text for text in sent) == 1
    code, out, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, "")
    assert out == (
        "created dyno_crm.run_tenant_prepared: each run's statement runs on its tenant's worker\n"
    )
    expected = set(run_statement_settings("create_tenant_prepared"))
    assert [_function_settings(u, PREPARED) for u in [citus_url, *workers]] == [expected] * (
        1 + len(workers)
    )
    sent.clear()
    assert single_run() == as_text
    assert sum("SELECT dyno_crm.run_tenant_prepared(" in text for text in sent) == 1
    code, out, err = cli(capsys, citus_url, "db", "distribute")
    assert out.startswith("nothing to do")
    # An earlier body (the same settings) is replaced too, on every node.
    definition = query("citus", "create_tenant_prepared")
    start, end = definition.index("AS $$") + len("AS $$"), definition.rindex("$$")
    earlier = (
        definition[:start]
        + "\nBEGIN\n    RAISE EXCEPTION 'an earlier body';\nEND\n"
        + (definition[end:])
    )
    with psycopg.connect(citus_url, autocommit=True) as conn:
        conn.execute(earlier)
    code, out, err = cli(capsys, citus_url, "db", "distribute")
    assert (code, err) == (0, "")
    assert out == (
        "updated dyno_crm.run_tenant_prepared to this version's definition"
        " (its run settings and body)\n"
    )
    sent.clear()
    assert single_run() == as_text
    assert sum("SELECT dyno_crm.run_tenant_prepared(" in text for text in sent) == 1


def test_a_worker_connection_keeps_at_most_eight_prepared_single_reports(
    citus_url: str,
) -> None:
    """run_tenant_prepared deallocates the statement prepared first when a ninth comes
    (each holds ~1.6 MB on the worker): twelve statements through one connection,
    each failing (division by zero) if it finds more than eight prepared with it."""
    counted = (
        "SELECT 1 / (CASE WHEN (SELECT count(*) FROM pg_prepared_statements"
        " WHERE name LIKE 'pc\\_%') <= 8 THEN 1 ELSE 0 END) WHERE $1::int IS NOT NULL"
    )
    with psycopg.connect(citus_url) as conn:
        tenant = first_tenant(conn)
        for n in range(12):
            conn.execute(
                query("citus", "run_tenant_prepared"),
                {"tenant_id": str(tenant), "name": f"pc_capped{n}", "statement": counted,
                 "arguments": "1"},
            )  # fmt: skip
        conn.rollback()
