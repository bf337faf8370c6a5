"""``python -m bench --only citus --citus-url URL``: runs on a Citus cluster against the
same runs on plain PostgreSQL, on the same generated data, in one process.

Two tenants (``--citus-deals`` each; bench/generate.py) are loaded into a fresh
database of the plain server (``--database-url`` or ``$BENCH_DATABASE_URL``) and into
a fresh database of the cluster whose coordinator ``--citus-url`` names (Citus in the
database on every node, the coordinator registered, every active worker added, then
``db upgrade`` and ``db distribute``: as docs/scaling.md sets one up). For each tenant,
each side: the batch (median of ``--repeat``) and the single report of random reps and
teams (p50 over ``--single-sample``), and the ratios Citus / plain. Figures and ratios,
never a pass or fail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.console import Console

from bench.generate import GeneratedTenant, TenantSpec, generate
from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.db import migrate
from pipeline_coverage.db.distribute import distribute
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.periods import quarter_of

#: The goals of the Citus issue: Citus / plain PostgreSQL on the same data.
SINGLE_GOAL, BATCH_GOAL = 2.0, 1.3
CITUS_DB = "pipeline_coverage_bench_citus"
FigureRow = tuple[str, str, str, bool | None]


def _cluster_database(coordinator_url: str) -> str:
    """A fresh database on every node of the cluster, registered and distributed."""
    with psycopg.connect(coordinator_url, autocommit=True) as admin:
        nodes = admin.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND isactive"
            " AND noderole = 'primary'"
        ).fetchall()
        admin.execute("SET citus.enable_create_database_propagation TO on")
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(CITUS_DB))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(CITUS_DB)))
    if not nodes:
        raise SystemExit(f"{coordinator_url}: the cluster's metadata lists no active worker")
    user = conninfo_to_dict(coordinator_url).get("user")
    for host, port in nodes:
        worker = make_conninfo(host=host, port=port, user=user, dbname=CITUS_DB)
        with psycopg.connect(worker, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    url = make_conninfo(coordinator_url, dbname=CITUS_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        info = conninfo_to_dict(coordinator_url)
        conn.execute(
            "SELECT citus_set_coordinator_host(%s, %s)",
            (info.get("host", "localhost"), int(str(info.get("port", 5432)))),
        )
        for host, port in nodes:
            conn.execute("SELECT citus_add_node(%s, %s)", (host, port))
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        distribute(conn)
    return url


def _timings(
    url: str, tenants: list[GeneratedTenant], period: tuple[dt.date, dt.date],
    args: argparse.Namespace,
) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Per tenant: (batch median ms, single report p50 ms)."""
    from bench.run import median_ms, percentile, principals, single_latencies

    found = {}
    with psycopg.connect(url) as conn:
        for tenant in tenants:

            def batch_run(t: GeneratedTenant = tenant) -> uuid.UUID:
                return run_pipeline_coverage_batch(conn, t.tenant_id, *period)

            batch = median_ms(batch_run, args.repeat)
            rng = random.Random(7)
            everyone = principals(tenant)
            chosen = rng.sample(everyone, min(args.single_sample, len(everyone)))
            single_latencies(conn, tenant, period, chosen[:5])  # warm-up
            samples = single_latencies(conn, tenant, period, chosen)
            found[tenant.name] = (batch, percentile(samples, 0.5))
    return found


def citus_figures(server_url: str, args: argparse.Namespace) -> list[FigureRow]:
    """The figures of plain PostgreSQL and of the cluster, and their ratios."""
    from bench.run import drop_database, fresh_database

    console = Console(stderr=True)
    period = quarter_of(dt.date.today())
    specs = [
        TenantSpec(f"citus{i}", args.citus_deals, args.users // 4, args.groups // 4, args.pipelines)
        for i in range(2)
    ]
    rows: list[FigureRow] = []
    with tempfile.TemporaryDirectory() as folder:
        console.print(f"citus: generating 2 tenants of {args.citus_deals:,} deals ...")
        tenants = generate(Path(folder), specs, period[0])
        plain = fresh_database(server_url, f"{CITUS_DB}_plain")
        console.print("citus: loading plain PostgreSQL ...")
        with psycopg.connect(plain) as conn:
            load_directory(conn, Path(folder))
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        console.print("citus: the cluster's database, distributed, loading ...")
        cluster = _cluster_database(args.citus_url)
        with psycopg.connect(cluster) as conn:
            load_directory(conn, Path(folder))
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            placed = {
                str(t.tenant_id): conn.execute(
                    "SELECT nodename || ':' || nodeport FROM citus_shards WHERE shardid ="
                    " get_shard_id_for_distribution_column('dyno_crm.tenant', %s)",
                    (t.tenant_id,),
                ).fetchone()
                for t in tenants
            }
        console.print("citus: timing runs on both ...")
        on_plain = _timings(plain, tenants, period, args)
        on_citus = _timings(cluster, tenants, period, args)
    for tenant in tenants:
        node = placed[str(tenant.tenant_id)]
        where = f"{tenant.deals:,} deals, on {node[0] if node else '?'}"
        (p_batch, p_single), (c_batch, c_single) = on_plain[tenant.name], on_citus[tenant.name]
        rows.append(
            (f"citus: batch, {where}: Citus / plain",
             f"{c_batch:.0f} / {p_batch:.0f} ms = {c_batch / p_batch:.2f}x",
             f"<= {BATCH_GOAL}x", c_batch / p_batch <= BATCH_GOAL)
        )  # fmt: skip
        rows.append(
            (f"citus: single report p50, {where}: Citus / plain",
             f"{c_single:.1f} / {p_single:.1f} ms = {c_single / p_single:.2f}x",
             f"<= {SINGLE_GOAL}x", c_single / p_single <= SINGLE_GOAL)
        )  # fmt: skip
    drop_database(server_url, f"{CITUS_DB}_plain")
    return rows
