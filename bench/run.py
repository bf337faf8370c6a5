"""``make bench``: measures the batch, the single report, the seed loop and the loader
in one run on one database, and prints the figures with their goals and ratios.

Timings are medians over repeated runs on warm caches; nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.table import Table

from bench.calibration_bench import calibration_figures
from bench.citus_bench import citus_figures
from bench.generate import GeneratedTenant, TenantSpec, generate
from bench.history_bench import history_figures
from bench.http_load import run_http_load
from bench.http_mix import run_http_mix
from bench.import_bench import import_figures
from pipeline_coverage import (
    compare_runs,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.config import Settings
from pipeline_coverage.db import migrate
from pipeline_coverage.db.embedded import embedded_server
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.periods import quarter_of
from pipeline_coverage.sql import expand, parse_named_queries, query, specialize
from pipeline_coverage.store import _deal_credits, run_deals

HERE = Path(__file__).parent
QUERIES = parse_named_queries((HERE / "queries.sql").read_text(), "queries.sql")
SEED_QUERY = (HERE / "seed_query.sql").read_text()
#: A copy of a stored run, with the fact table's metric columns from the registry.
COPY_RUN = sql.SQL(QUERIES["write_drilldown_floor"]).format(
    metrics=sql.SQL(", ").join(sql.Identifier(name) for name in NAMES),
    fact_metrics=sql.SQL(", ").join(sql.Identifier("f", name) for name in NAMES),
)
BENCH_DB = "pipeline_coverage_bench"
#: Deals of the import copied straight into a copy of `deal` (the load floor).
FLOOR_ROWS = 300_000


@dataclass
class Figure:
    """One measured figure, its goal and whether the goal is met."""

    name: str
    value: str
    goal: str = ""
    met: bool | None = None


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    data_dir = Settings.from_env().data_dir.parent / "pipeline-coverage-bench"
    with embedded_server(data_dir) as embedded:
        yield embedded


def drop_database(server_url: str, name: str) -> None:
    """Drop a database a bench made for itself (``fresh_database``), once measured."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def fresh_database(server_url: str, name: str = BENCH_DB) -> str:
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    migrate.upgrade(url)
    return url


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def previous_batch_ms(
    conn: psycopg.Connection[Any], tenant: GeneratedTenant, period: tuple[dt.date, dt.date],
    repeat: int,
) -> float:  # fmt: skip
    """The batch as it was before the drill-down (the seed's three columns only)."""

    def previous() -> None:
        run_id = conn.execute(
            "INSERT INTO dyno_crm.report_run (tenant_id, report_type, period_start,"
            " period_end) VALUES (%s, 'PIPELINE_COVERAGE', %s, %s) RETURNING id",
            (tenant.tenant_id, *period),
        ).fetchone()
        assert run_id is not None
        conn.execute(
            QUERIES["previous_batch"],
            {
                "tenant_id": str(tenant.tenant_id),
                "period_start": period[0],
                "period_end": period[1],
                "pipeline_id": None,
                "by_pipeline": False,
                "run_id": str(run_id[0]),
            },
        )
        conn.commit()

    return median_ms(previous, repeat)


DRILLDOWN_TABLES = ("report_run", "report_pipeline_coverage_fact", "report_run_deals",
                    "report_run_credit")  # fmt: skip


def copy_floor(conn: psycopg.Connection[Any], deals_csv: Path, rows: int) -> tuple[int, float]:
    """PostgreSQL's own COPY of the first ``rows`` deals of the import into a copy of
    ``deal`` with the same checks, indexes and foreign keys (read from the catalog),
    committed: what a load into this schema cannot beat, whatever it checks. Returns
    the rows copied and their rate. The copy lives in a schema of its own, dropped
    afterwards. (bench/generate.py writes one record per line.)"""
    try:
        conn.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE")
        conn.execute("CREATE SCHEMA bench_floor")
        conn.execute("CREATE TABLE bench_floor.deal (LIKE dyno_crm.deal INCLUDING ALL)")
        keys = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'dyno_crm.deal'::regclass AND contype = 'f'"
        ).fetchall()
        for (definition,) in keys:
            conn.execute(f"ALTER TABLE bench_floor.deal ADD {definition}")
        conn.commit()
        count = 0
        with deals_csv.open("rb") as source:
            columns = source.readline().decode().strip()
            start = time.perf_counter()
            with conn.cursor().copy(
                f"COPY bench_floor.deal ({columns}) FROM STDIN WITH (FORMAT csv)"
            ) as copy:
                for line in source:
                    copy.write(line)
                    count += 1
                    if count == rows:
                        break
            conn.commit()  # the deferred foreign keys are checked here
            seconds = time.perf_counter() - start
    finally:
        conn.rollback()
        conn.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE")
        conn.commit()
    return count, count / seconds


def _stored_bytes(conn: psycopg.Connection[Any]) -> int:
    return sum(_table_bytes(conn).values())


def shown_floor(
    conn: psycopg.Connection[Any], tenant: GeneratedTenant, run_id: uuid.UUID,
    principal: tuple[str, uuid.UUID], repeat: int,
) -> float:  # fmt: skip
    """What any drill-down of ``principal`` costs at least: its rows, already computed and
    stored as plain rows of a table, read back and typed into DealCredit (the library's
    answer) — no arrays to unnest, no join, no sort."""
    conn.execute(
        "CREATE TEMPORARY TABLE shown_floor AS SELECT * FROM ("  # noqa: S608 (our statement)
        + query("runs", "run_deals").strip().removesuffix(";")
        + ") AS d",
        {"tenant_id": str(tenant.tenant_id), "run_id": str(run_id), "principal_type": principal[0],
         "principal_id": str(principal[1]), "after_type": None, "after_principal": None,
         "after_pipeline": None, "after_deal": None, "limit": 1_000_000},
    )  # fmt: skip
    conn.commit()

    def read() -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM shown_floor", binary=True)
            _deal_credits(cur)
        conn.commit()

    floor_ms = median_ms(read, repeat)
    conn.execute("DROP TABLE shown_floor")
    conn.commit()
    return floor_ms


def drilldown_figures(
    conn: psycopg.Connection[Any], tenant: GeneratedTenant, period: tuple[dt.date, dt.date],
    repeat: int,
) -> list[Figure]:  # fmt: skip
    """Today's batch (numbers + drill-down) against the previous one and the floor:
    time, rows written, bytes per run; and the drill-down of the largest principal."""
    params = {"tenant_id": str(tenant.tenant_id), "period_start": period[0],
              "period_end": period[1]}  # fmt: skip

    def floor() -> None:
        conn.execute(QUERIES["floor"], params).fetchall()
        conn.commit()

    floor_ms = median_ms(floor, repeat)
    previous_ms = previous_batch_ms(conn, tenant, period, repeat)
    run_ids: list[uuid.UUID] = []

    def batch() -> None:
        run_ids.append(run_pipeline_coverage_batch(conn, tenant.tenant_id, *period))

    batch_ms = median_ms(batch, repeat)
    before = _stored_bytes(conn)
    for _ in range(3):
        batch()
    per_run = (_stored_bytes(conn) - before) / 3
    counts = conn.execute(
        expand(
            "SELECT (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact"
            "        WHERE tenant_id = %(t)s AND run_id = %(r)s),"
            " (SELECT COALESCE(sum(cardinality(deal_ids)), 0) FROM dyno_crm.report_run_deals"
            "  WHERE tenant_id = %(t)s"
            "  AND run_id = %(r)s),"
            # (the run's credit rows as readers resolve them: it may store only changes)
            " (SELECT count(*) FROM /* fragment: run_credit_rows */ AS c"
            "  WHERE c.tenant_id = %(tenant_id)s AND c.run_id = %(r)s),"
            " (SELECT COALESCE(sum(cardinality(c.deal_ids)), 0)"
            "  FROM /* fragment: run_credit_rows */ AS c"
            "  WHERE c.tenant_id = %(tenant_id)s AND c.run_id = %(r)s)"
        ),
        {"t": tenant.tenant_id, "tenant_id": tenant.tenant_id, "r": run_ids[-1]},
    ).fetchone()
    input_rows = 0

    def input_floor() -> None:
        nonlocal input_rows
        read = conn.execute(QUERIES["input_floor"], {**params, "history_start": history_start})
        input_rows = sum(int(row[0]) for row in read.fetchall())
        conn.commit()

    history_start = period[0] - dt.timedelta(days=365)  # the default lookback
    input_ms = median_ms(input_floor, repeat)
    copies: list[uuid.UUID] = []

    def write_floor() -> None:
        copied = conn.execute(
            COPY_RUN,
            {"tenant_id": str(tenant.tenant_id), "run_id": str(run_ids[-1])},
        )
        first = copied.fetchone()
        assert first is not None
        copies.append(first[0])
        conn.commit()

    write_ms = median_ms(write_floor, repeat)
    conn.execute(
        "DELETE FROM dyno_crm.report_run WHERE tenant_id = %s AND id = ANY (%s)",
        (tenant.tenant_id, copies),
    )
    conn.commit()
    largest = conn.execute(
        expand(
            "SELECT c.principal_type, c.principal_id, cardinality(c.deal_ids)"
            " FROM /* fragment: run_credit_rows */ AS c"
            " WHERE c.tenant_id = %(tenant_id)s AND c.run_id = %(run_id)s"
            " ORDER BY cardinality(c.deal_ids) DESC LIMIT 1"
        ),
        {"tenant_id": tenant.tenant_id, "run_id": run_ids[-1]},
    ).fetchone()
    conn.commit()
    assert counts is not None
    assert largest is not None
    show_ms = median_ms(
        lambda: run_deals(conn, run_ids[-1], tenant.tenant_id, principal_type=largest[0],
                          principal_id=largest[1]),
        repeat,
    )  # fmt: skip
    shown_floor_ms = shown_floor(conn, tenant, run_ids[-1], largest[:2], repeat)
    name = f"{tenant.name} ({tenant.deals:,} deals)"
    ratio = batch_ms / previous_ms
    drill_share = max(0.0, (batch_ms - previous_ms) / batch_ms)
    figures = [
        Figure(f"{name}: floor (one pass over open in-period deals)", f"{floor_ms:.1f} ms"),
        Figure(f"{name}: previous batch (3 seed columns, no drill-down)",
               f"{previous_ms:.1f} ms ({previous_ms / floor_ms:.2f}x floor)"),
        Figure(
            f"{name}: batch with drill-down and every metric",
            f"{batch_ms:.1f} ms ({batch_ms / floor_ms:.2f}x floor)",
            "<= 150 ms" if tenant.name == "main" else "",
            batch_ms <= 150 if tenant.name == "main" else None,
        ),
        Figure(f"{name}: batch / previous batch", f"{ratio:.2f}x",
               "<= 3x" if tenant.name == "main" else "",
               ratio <= 3 if tenant.name == "main" else None),
        Figure(f"{name}: drill-down's share of the batch (beyond the previous batch)",
               f"{drill_share:.0%}"),
        Figure(f"{name}: input floor (read the {input_rows:,} deals a run reads, with stages)",
               f"{input_ms:.1f} ms ({input_ms / floor_ms:.2f}x floor)"),
        Figure(f"{name}: write floor (a copy of one run's stored rows, nothing computed)",
               f"{write_ms:.1f} ms"),
        Figure(f"{name}: batch / (input floor + write floor)",
               f"{batch_ms / (input_ms + write_ms):.2f}x (floors: {input_ms + write_ms:.1f} ms)"),
        Figure(
            f"{name}: rows written per run (fact / deal / credit rows / credits)",
            f"{counts[0]:,} / {counts[1]:,} / {counts[2]:,} / {counts[3]:,}",
        ),
        Figure(f"{name}: bytes per run (tables + indexes; no deal changed since the"
               " previous run)", f"{per_run / 1e6:.1f} MB"),
        Figure(
            f"{name}: show --deals of the largest principal ({largest[2]:,} deals)",
            f"{show_ms:.1f} ms ({show_ms / shown_floor_ms:.2f}x its fetch floor)",
            "<= 50 ms",
            show_ms <= 50,
        ),
        Figure(
            f"{name}: fetch floor of that drill-down (its rows read back from a table of"
            " their own into the library's DealCredit, nothing computed)",
            f"{shown_floor_ms:.1f} ms",
        ),
    ]  # fmt: skip
    if tenant.name == "dense":
        figures.insert(3, Figure(f"{name}: batch / floor", f"{batch_ms / floor_ms:.2f}x",
                                 "<= 2.5x", batch_ms / floor_ms <= 2.5))  # fmt: skip
    return figures


def _drilldown_stored(conn: psycopg.Connection[Any], tenant: uuid.UUID, run: uuid.UUID) -> int:
    """The deals a run's chunk rows hold (complete chunks: all of theirs; chunks stored
    as what changed: their new and changed ones) and the deals they remove."""
    row = conn.execute(
        "SELECT COALESCE(sum(cardinality(deal_ids) + COALESCE(cardinality(removed_deal_ids),"
        " 0)), 0) FROM dyno_crm.report_run_deals WHERE tenant_id = %s AND run_id = %s",
        (tenant, run),
    ).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def snapshot_storage_figures(
    conn: psycopg.Connection[Any], tenant: GeneratedTenant, period: tuple[dt.date, dt.date],
) -> list[Figure]:  # fmt: skip
    """Issue 24's storage per snapshot: a batch run stored complete (no earlier batch of
    the period: the tenant's runs are deleted first), then daily snapshots after a day
    in which 2% of the period's deals changed (bench/queries.sql a_day_of_changes).
    Bytes are the tables' and indexes' growth; the drill-down's are its deals' and
    credits' tables, beside the fact rows (the report itself, one per row, always
    written). Changes the tenant's deals, so it runs after what reads them."""
    conn.execute("DELETE FROM dyno_crm.report_run WHERE tenant_id = %s", (tenant.tenant_id,))
    conn.commit()

    def snapshot() -> tuple[uuid.UUID, float, dict[str, int]]:
        before = _table_bytes(conn)
        start = time.perf_counter()
        run = run_pipeline_coverage_batch(conn, tenant.tenant_id, *period)
        seconds = time.perf_counter() - start
        after = _table_bytes(conn)
        return run, seconds * 1000, {t: after[t] - before[t] for t in after}

    complete, complete_ms, complete_bytes = snapshot()
    complete_entries = _drilldown_stored(conn, tenant.tenant_id, complete)
    days = []
    for day in (1, 2, 3):
        conn.execute(QUERIES["a_day_of_changes"], {
            "tenant_id": str(tenant.tenant_id), "period_start": period[0],
            "period_end": period[1], "day": day})  # fmt: skip
        conn.commit()
        run, ms, grown = snapshot()
        days.append((ms, grown, _drilldown_stored(conn, tenant.tenant_id, run)))

    def drill(grown: dict[str, int]) -> int:
        return grown["report_run_deals"] + grown["report_run_credit"]

    name = f"{tenant.name} ({tenant.deals:,} deals)"
    whole = drill(complete_bytes)
    share = max(drill(g) for _, g, _ in days) / whole
    deal_share = max(g["report_run_deals"] for _, g, _ in days) / complete_bytes["report_run_deals"]
    entries = max(e for _, _, e in days) / complete_entries
    return [
        Figure(f"{name}: snapshot stored complete: deals / credits / fact rows",
               " / ".join(f"{complete_bytes[t] / 1e6:.2f} MB" for t in
                          ("report_run_deals", "report_run_credit",
                           "report_pipeline_coverage_fact"))
               + f"; {complete_entries:,} deals written, {complete_ms:.0f} ms"),
        *[Figure(f"{name}: daily snapshot {i} after 2% of its deals changed: deals / credits"
                 " / fact rows",
                 " / ".join(f"{g[t] / 1e6:.2f} MB" for t in
                            ("report_run_deals", "report_run_credit",
                             "report_pipeline_coverage_fact"))
                 + f"; {e:,} deals written, {ms:.0f} ms")
          for i, (ms, g, e) in enumerate(days, 1)],
        Figure(f"{name}: daily snapshot's deals: bytes / deals written, of the complete run's",
               f"{deal_share:.1%} / {entries:.1%}", "<= 10% / <= 10%",
               deal_share <= 0.10 and entries <= 0.10),
        Figure(f"{name}: daily snapshot's drill-down (deals + credits), of the complete run's",
               f"{share:.1%}", "<= 10%", share <= 0.10),
    ]  # fmt: skip


def _table_bytes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT t, pg_total_relation_size(('dyno_crm.' || t)::regclass)"
        " FROM unnest(%s::text[]) AS t",
        (list(DRILLDOWN_TABLES),),
    ).fetchall()
    conn.commit()
    return {str(t): int(size) for t, size in rows}


def movement_figures(
    conn: psycopg.Connection[Any], tenant: GeneratedTenant, period: tuple[dt.date, dt.date],
    repeat: int,
) -> list[Figure]:  # fmt: skip
    """``compare`` of two whole-tenant runs a week of changes apart (SPEC.md §11): the
    waterfall of every row, the same with every step's deals, and one principal's.
    Changes the tenant's deals, so it runs after everything else that reads them."""
    run_a = run_pipeline_coverage_batch(conn, tenant.tenant_id, *period)
    conn.execute(QUERIES["a_week_of_changes"], {"tenant_id": str(tenant.tenant_id),
                 "period_start": period[0], "period_end": period[1]})  # fmt: skip
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE dyno_crm.deal")
    conn.autocommit = False
    run_b = run_pipeline_coverage_batch(conn, tenant.tenant_id, *period)
    rows_ms = median_ms(lambda: compare_runs(conn, run_a, run_b, tenant.tenant_id), repeat)
    deals_ms = median_ms(
        lambda: compare_runs(conn, run_a, run_b, tenant.tenant_id, deals=True), repeat
    )
    movement = compare_runs(conn, run_a, run_b, tenant.tenant_id, deals=True)
    deals = movement.deals or ()
    busiest = max(movement.rows, key=lambda row: sum(int(row[f"{s}_count"] or 0) for s in
                                                     ("won", "lost", "left", "entered",
                                                      "changed")))  # fmt: skip
    one_ms = median_ms(
        lambda: compare_runs(conn, run_a, run_b, tenant.tenant_id, deals=True,
                             principal_type=busiest.principal_type,
                             principal_id=busiest.principal_id),
        repeat,
    )  # fmt: skip
    mine = sum(1 for deal in deals if deal.principal_id == busiest.principal_id)
    name = f"{tenant.name} ({tenant.deals:,} deals)"
    return [
        Figure(f"{name}: compare two whole-tenant runs ({len(movement.rows):,} rows)",
               f"{rows_ms:.1f} ms", "<= 200 ms", rows_ms <= 200),
        Figure(f"{name}: compare --deals, every step's deals ({len(deals):,})",
               f"{deals_ms:.1f} ms"),
        Figure(f"{name}: compare --deals of the busiest principal ({mine:,} deals)",
               f"{one_ms:.1f} ms"),
        Figure(f"{name}: identity start - won - lost - left + entered + changed = end",
               f"{sum(row.identity_holds for row in movement.rows):,} of "
               f"{len(movement.rows):,} rows", "every row",
               all(row.identity_holds for row in movement.rows)),
    ]  # fmt: skip


def principals(tenant: GeneratedTenant) -> list[tuple[str, uuid.UUID]]:
    return [("USER", u) for u in tenant.users] + [("GROUP", g) for g in tenant.groups]


def single_latencies(
    conn: psycopg.Connection[Any],
    tenant: GeneratedTenant,
    period: tuple[dt.date, dt.date],
    chosen: list[tuple[str, uuid.UUID]],
) -> list[float]:
    """Wall time (ms) of the single report, stored and committed, for each principal."""
    samples = []
    for kind, who in chosen:
        start = time.perf_counter()
        run_pipeline_coverage_report(conn, tenant.tenant_id, *period, kind, who)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def single_and_floor_latencies(
    conn: psycopg.Connection[Any],
    tenant: GeneratedTenant,
    period: tuple[dt.date, dt.date],
    chosen: list[tuple[str, uuid.UUID]],
) -> tuple[list[float], list[float]]:
    """``single_latencies``, each report after its floor: the principal's deals read
    once by its indexes (``principal_floor``), timed the same way, in turns."""
    floor_of = {
        kind: specialize(QUERIES["principal_floor"], users=kind == "USER", groups=kind == "GROUP")
        for kind in ("USER", "GROUP")
    }
    reports, floors = [], []
    for kind, who in chosen:
        params = {"tenant_id": str(tenant.tenant_id), "principal_id": str(who)}
        start = time.perf_counter()
        conn.execute(floor_of[kind], params).fetchall()
        conn.commit()
        floors.append((time.perf_counter() - start) * 1000)
        reports += single_latencies(conn, tenant, period, [(kind, who)])
    return reports, floors


def seed_params(
    run_id: uuid.UUID,
    tenant: GeneratedTenant,
    period: tuple[dt.date, dt.date],
    kind: str,
    who: uuid.UUID,
) -> dict[str, Any]:
    """The seed query's parameters for one principal, over all pipelines."""
    return {
        "run_id": str(run_id),
        "tenant_id": str(tenant.tenant_id),
        "period_start": period[0],
        "period_end": period[1],
        "principal_type": kind,
        "principal_id": str(who),
        "pipeline_id": None,
    }


def seed_loop_ms(
    conn: psycopg.Connection[Any],
    tenant: GeneratedTenant,
    period: tuple[dt.date, dt.date],
    sample: int,
    rng: random.Random,
) -> tuple[float, int]:
    """Mean time of the seed's query per principal, times the number of principals."""
    everyone = principals(tenant)
    chosen = rng.sample(everyone, min(sample, len(everyone)))
    start = time.perf_counter()
    for kind, who in chosen:
        conn.execute(SEED_QUERY, seed_params(uuid.uuid4(), tenant, period, kind, who)).fetchall()
    conn.commit()
    per_principal = (time.perf_counter() - start) * 1000 / len(chosen)
    return per_principal * len(everyone), len(chosen)


def seed_runner_ms(
    conn: psycopg.Connection[Any],
    tenant: GeneratedTenant,
    period: tuple[dt.date, dt.date],
    sample: int,
    rng: random.Random,
) -> float:
    """The seed's whole runner per principal (header, query, fact row, commit), sampled
    and multiplied out: what storing everyone's coverage costs without a batch."""
    everyone = principals(tenant)
    chosen = rng.sample(everyone, min(sample, len(everyone)))
    start = time.perf_counter()
    for kind, who in chosen:
        parameters = json.dumps(
            {"principal_type": kind, "principal_id": str(who), "pipeline_id": None}
        )
        header = conn.execute(
            "INSERT INTO dyno_crm.report_run (tenant_id, report_type, generated_at,"
            " period_start, period_end, parameters) VALUES (%s, %s, NOW(), %s, %s, %s)"
            " RETURNING id",
            (tenant.tenant_id, "PIPELINE_COVERAGE", *period, parameters),
        ).fetchone()
        assert header is not None
        row = conn.execute(SEED_QUERY, seed_params(header[0], tenant, period, kind, who)).fetchone()
        conn.execute(
            "INSERT INTO dyno_crm.report_pipeline_coverage_fact (run_id, tenant_id,"
            " period_start, period_end, principal_type, principal_id, pipeline_id,"
            " target_amount, open_amount, coverage_ratio)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            row,
        )
        conn.commit()
    return (time.perf_counter() - start) * 1000 / len(chosen) * len(everyone)


def cli_peak_rss_mb(url: str, tenant: GeneratedTenant, period: tuple[dt.date, dt.date]) -> float:
    """Peak RSS of a `pipeline-coverage run --all` process (its own, measured by the OS).

    The CLI is started by a small launcher, which reports its child's peak: a child
    started from this (large) process would count this process's peak as its own, as
    Linux carries the resident peak of the memory it replaces at exec (vfork)."""
    launcher = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True,"
        " stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
        ".ru_maxrss)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            launcher,
            sys.executable,
            "-m",
            "pipeline_coverage",
            "--database-url",
            url,
            "run",
            "--tenant",
            str(tenant.tenant_id),
            "--period-start",
            period[0].isoformat(),
            "--period-end",
            period[1].isoformat(),
            "--all",
            "--format",
            "csv",
        ],
        check=True,
        stdout=subprocess.PIPE,  # (the CLI's errors go to the bench's stderr)
        text=True,
    )
    return int(done.stdout.split()[-1]) / 1024


def snapshot_cli_seconds(url: str) -> tuple[float, dict[str, Any]]:
    """Wall time of `pipeline-coverage snapshot --format json` as cron runs it (a process
    of its own, start-up included), and its JSON summary."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_coverage", "--database-url", url, "snapshot",
         "--format", "json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - start, json.loads(done.stdout)


def snapshot_figures(server_url: str, args: argparse.Namespace) -> list[Figure]:
    """`snapshot` over many tenants of one size, on a database of their own: the day's
    first call (every run computed and stored) and a second one (every run replayed)."""
    console = Console(stderr=True)
    specs = [
        TenantSpec(f"tenant{i:03}", args.snapshot_deals, 50, 5, args.pipelines, probes=0)
        for i in range(args.snapshot_tenants)
    ]
    with tempfile.TemporaryDirectory() as folder:
        console.print(
            f"snapshot: generating {args.snapshot_tenants} tenants x "
            f"{args.snapshot_deals:,} deals ..."
        )
        generate(Path(folder), specs, quarter_of(dt.date.today())[0])
        url = fresh_database(server_url, f"{BENCH_DB}_snapshot")
        with psycopg.connect(url) as conn:
            load_directory(conn, Path(folder))
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
    console.print("snapshot: the day's first call, then the same day again ...")
    first, taken = snapshot_cli_seconds(url)
    again, replayed = snapshot_cli_seconds(url)
    runs = taken["created"]
    label = f"{args.snapshot_tenants} tenants x {args.snapshot_deals:,} deals"
    return [
        Figure(f"snapshot, {label}: {runs} runs (2 quarters each)", f"{first:.1f} s wall"),
        Figure("snapshot: runs/s (process start-up included)", f"{runs / first:.1f}"),
        Figure("snapshot: per run", f"{first / runs * 1000:.0f} ms"),
        Figure(
            f"snapshot again the same day: {replayed['replayed']} replayed, "
            f"{replayed['created']} new",
            f"{again:.1f} s wall ({replayed['replayed'] / again:.0f} runs/s)",
        ),
        Figure("snapshot: first call / same-day repeat", f"{first / again:.1f}x"),
    ]


def http_mix_figures(server_url: str, args: argparse.Namespace) -> list[Figure]:
    """The HTTP tenant mix and the noisy neighbour (bench/http_mix.py)."""
    Console(stderr=True).print(
        f"HTTP tenant mix: {args.http_clients} connections, 1 and {args.http_workers} workers ..."
    )
    rows = run_http_mix(server_url, args.http_workers, args.http_clients, args.http_seconds)
    return [Figure(name, value, goal, met) for name, value, goal, met in rows]


def run(args: argparse.Namespace) -> list[Figure]:
    if args.only == "snapshot":
        with server(args.database_url) as server_url:
            return snapshot_figures(server_url, args)
    if args.only == "http":
        with server(args.database_url) as server_url:
            return http_mix_figures(server_url, args)
    if args.only == "import":
        with server(args.database_url) as server_url:
            return import_only_figures(server_url, args)
    if args.only == "history":
        with server(args.database_url) as server_url:
            return [Figure(*row) for row in history_figures(server_url, args)]
    if args.only == "citus":
        if not args.citus_url:
            raise SystemExit("--only citus needs --citus-url (or $CITUS_DATABASE_URL)")
        with server(args.database_url) as server_url:
            return [Figure(*row) for row in citus_figures(server_url, args)]
    if args.only == "calibration":
        with server(args.database_url) as server_url:
            return [Figure(*row) for row in calibration_figures(server_url, args)]
    console = Console(stderr=True)
    rng = random.Random(7)
    period = quarter_of(dt.date.today())
    if args.only == "movement":
        return movement_only(args, console, period)
    specs = [
        TenantSpec("main", args.deals, args.users, args.groups, args.pipelines),
        TenantSpec("small", args.small, args.users, args.groups, args.pipelines),
        TenantSpec("large", args.large, args.users, args.groups, args.pipelines),
        TenantSpec(
            "dense", args.deals, args.users, args.groups, args.pipelines, open_in_period=1 / 6
        ),
    ]
    specs += [
        TenantSpec(f"other{i}", args.other_deals, 50, 5, args.pipelines)
        for i in range(args.other_tenants)
    ]
    figures: list[Figure] = []
    with server(args.database_url) as server_url, tempfile.TemporaryDirectory() as folder:
        console.print(f"generating {sum(s.deals for s in specs):,} deals ...")
        tenants = {t.name: t for t in generate(Path(folder), specs, period[0])}
        url = fresh_database(server_url)
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            figures.append(Figure("PostgreSQL", str(version[0] if version else "?")))
            conn.commit()
            console.print("loading ...")
            start = time.perf_counter()
            loads = load_directory(conn, Path(folder))
            seconds = time.perf_counter() - start
            deals = next(item.rows for item in loads if item.table == "deal")
            rate = deals / seconds
            figures.append(
                Figure(
                    "load: deal rows/s (whole import)",
                    f"{rate:,.0f} ({deals:,} deals in {seconds:.1f} s)",
                    ">= 100,000",
                    rate >= 100_000,
                )
            )
            copied, floor_rate = copy_floor(conn, Path(folder) / "deals.csv", FLOOR_ROWS)
            figures.append(
                Figure(
                    f"load floor: COPY of {copied:,} deals into deal's constraints, rows/s",
                    f"{floor_rate:,.0f} (the loader: {rate / floor_rate:.2f}x of it)",
                )
            )
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            conn.autocommit = False

            main = tenants["main"]
            params = {
                "tenant_id": str(main.tenant_id),
                "period_start": period[0],
                "period_end": period[1],
            }
            console.print("floor, batch, seed loop ...")

            def floor() -> None:
                conn.execute(QUERIES["floor"], params).fetchall()
                conn.commit()

            floor_ms = median_ms(floor, args.repeat)
            run_ids: list[uuid.UUID] = []

            def batch() -> None:
                run_ids.append(run_pipeline_coverage_batch(conn, main.tenant_id, *period))

            batch_ms = median_ms(batch, args.repeat)
            rows = conn.execute(
                "SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact WHERE run_id = %s",
                (run_ids[-1],),
            ).fetchone()
            row_count = int(rows[0]) if rows else 0

            def write_floor() -> None:
                run_id = conn.execute(
                    "INSERT INTO dyno_crm.report_run (tenant_id, report_type, period_start,"
                    " period_end) VALUES (%s, 'PIPELINE_COVERAGE', %s, %s) RETURNING id",
                    (main.tenant_id, *period),
                ).fetchone()
                assert run_id is not None
                conn.execute(
                    QUERIES["write_floor"], {**params, "run_id": str(run_id[0]), "rows": row_count}
                )
                conn.commit()

            write_ms = median_ms(write_floor, args.repeat)
            seed_ms, sampled = seed_loop_ms(conn, main, period, args.seed_sample, rng)

            figures.append(
                Figure(
                    f"floor: one pass over open in-period deals ({main.deals:,})",
                    f"{floor_ms:.1f} ms",
                )
            )
            figures.append(
                Figure(f"write floor: insert {row_count:,} fact rows", f"{write_ms:.1f} ms")
            )
            figures.append(
                Figure(
                    f"batch: {row_count:,} principals, one run",
                    f"{batch_ms:.1f} ms",
                    "< 1 s",
                    batch_ms < 1000,
                )
            )
            figures.append(
                Figure(
                    "batch / floor",
                    f"{batch_ms / floor_ms:.2f}x",
                    "<= 1.5x",
                    batch_ms / floor_ms <= 1.5,
                )
            )
            figures.append(
                Figure("batch / (floor + write floor)", f"{batch_ms / (floor_ms + write_ms):.2f}x")
            )
            figures.append(
                Figure(
                    f"seed loop: its query x {row_count:,} principals (sampled {sampled})",
                    f"{seed_ms:,.0f} ms",
                )
            )
            figures.append(
                Figure(
                    "seed loop / batch",
                    f"{seed_ms / batch_ms:.1f}x faster",
                    ">= 30x",
                    seed_ms / batch_ms >= 30,
                )
            )
            runner_ms = seed_runner_ms(conn, main, period, args.seed_sample, rng)
            figures.append(
                Figure("seed runner loop: header + query + fact + commit", f"{runner_ms:,.0f} ms")
            )
            figures.append(
                Figure("seed runner loop / batch", f"{runner_ms / batch_ms:.1f}x faster")
            )

            console.print("batch with drill-down vs the previous batch, main and dense ...")
            figures += drilldown_figures(conn, tenants["main"], period, args.repeat)
            figures += drilldown_figures(conn, tenants["dense"], period, args.repeat)

            console.print("single-principal latency ...")
            p50s = {}
            for name in ("small", "large"):
                tenant = tenants[name]
                everyone = principals(tenant)
                chosen = rng.sample(everyone, min(args.single_sample, len(everyone)))
                samples, floors = single_and_floor_latencies(conn, tenant, period, chosen)
                p50s[name] = percentile(samples, 0.5)
                p95 = percentile(samples, 0.95)
                figures.append(
                    Figure(
                        f"single report p50 / p95 at {tenant.deals:,} deals",
                        f"{p50s[name]:.2f} / {p95:.2f} ms",
                        "p50 <= 5, p95 <= 15 ms",
                        p50s[name] <= 5 and p95 <= 15,
                    )
                )
                floor_p95 = percentile(floors, 0.95)
                figures.append(
                    Figure(
                        f"single report's input floor p50 / p95 at {tenant.deals:,} deals"
                        " (the same principals' deals read once by their indexes)",
                        f"{percentile(floors, 0.5):.2f} / {floor_p95:.2f} ms"
                        f" (the report's p95: {p95 / floor_p95:.2f}x of it)",
                    )
                )
            figures.append(
                Figure(
                    "single p50: large / small (random reps)",
                    f"{p50s['large'] / p50s['small']:.2f}x",
                    "",
                )
            )
            probe_p50 = {}
            for name in ("small", "large"):
                tenant = tenants[name]
                # Same per-rep workload in every tenant: the probe reps, five rounds.
                probes = [("USER", who) for who in tenant.probes] * 5
                samples = single_latencies(conn, tenant, period, probes)
                probe_p50[name] = percentile(samples, 0.5)
                figures.append(
                    Figure(
                        f"single report, probe reps ({len(tenant.probes)}"
                        f" x 72 deals) at {tenant.deals:,} deals: p50 / p95",
                        f"{probe_p50[name]:.2f} / {percentile(samples, 0.95):.2f} ms",
                        "p50 <= 5 ms",
                        probe_p50[name] <= 5,
                    )
                )
            ratio = probe_p50["large"] / probe_p50["small"]
            figures.append(
                Figure(
                    "single p50, same rep workload: large / small",
                    f"{ratio:.2f}x",
                    "flat (<= 1.2x)",
                    ratio <= 1.2,
                )
            )
            console.print("storage per daily snapshot of the main tenant (changes its deals) ...")
            figures += snapshot_storage_figures(conn, main, period)
            console.print("compare two runs of the main tenant (changes its deals) ...")
            figures += movement_figures(conn, main, period, args.repeat)

        console.print("CLI peak RSS during a batch over the large tenant ...")
        peak = cli_peak_rss_mb(url, tenants["large"], period)
        figures.append(
            Figure(
                f"CLI peak RSS, batch over {tenants['large'].deals:,} deals",
                f"{peak:.0f} MB",
                "<= 150 MB",
                peak <= 150,
            )
        )
        if args.only == "core":
            return figures
        if not args.skip_http:
            console.print(
                f"HTTP load: {args.http_clients} clients for {args.http_seconds:.0f} s ..."
            )
            for name, value, goal, met in run_http_load(
                server_url, args.http_clients, args.http_seconds
            ):
                figures.append(Figure(name, value, goal, met))
            figures += http_mix_figures(server_url, args)
        figures += snapshot_figures(server_url, args)
        figures += import_only_figures(server_url, args)
        figures += [Figure(*row) for row in history_figures(server_url, args)]
    return figures


def import_only_figures(server_url: str, args: argparse.Namespace) -> list[Figure]:
    """`import` of the large tenant as a Salesforce export against `load` of it
    (bench/import_bench.py), on a database of its own."""
    return [Figure(*row) for row in import_figures(server_url, args)]


def movement_only(
    args: argparse.Namespace, console: Console, period: tuple[dt.date, dt.date]
) -> list[Figure]:
    """``--only movement``: the main tenant alone, loaded, and the movement figures."""
    spec = TenantSpec("main", args.deals, args.users, args.groups, args.pipelines)
    with server(args.database_url) as server_url, tempfile.TemporaryDirectory() as folder:
        [main] = generate(Path(folder), [spec], period[0])
        url = fresh_database(server_url)
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            conn.commit()
            console.print(f"loading {main.deals:,} deals ...")
            load_directory(conn, Path(folder))
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            conn.autocommit = False
            console.print("storage per daily snapshot of the main tenant ...")
            storage = snapshot_storage_figures(conn, main, period)
            console.print("compare two runs of the main tenant ...")
            return [
                Figure("PostgreSQL", str(version[0] if version else "?")),
                *storage,
                *movement_figures(conn, main, period, args.repeat),
            ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="server to use (default: $BENCH_DATABASE_URL, else embedded)",
    )
    parser.add_argument("--deals", type=int, default=300_000, help="deals of the main tenant")
    parser.add_argument("--small", type=int, default=10_000, help="deals of the small tenant")
    parser.add_argument("--large", type=int, default=1_000_000, help="deals of the large tenant")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--pipelines", type=int, default=3)
    parser.add_argument(
        "--other-tenants",
        type=int,
        default=2,
        help="unmeasured tenants sharing the tables, --other-deals each",
    )
    parser.add_argument("--other-deals", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--seed-sample", type=int, default=100)
    parser.add_argument("--single-sample", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP load test")
    parser.add_argument("--http-clients", type=int, default=50)
    parser.add_argument("--http-seconds", type=float, default=30)
    parser.add_argument(
        "--http-workers", type=int, default=2, help="serve --workers for the HTTP mix"
    )
    parser.add_argument("--snapshot-tenants", type=int, default=100)
    parser.add_argument("--snapshot-deals", type=int, default=10_000)
    parser.add_argument(
        "--only",
        choices=(
            "all",
            "core",
            "movement",
            "snapshot",
            "http",
            "import",
            "history",
            "calibration",
            "citus",
        ),
        default="all",
        help="core: the load, batches, drill-downs, single reports, compare and the CLI's"
        " RSS (every part before the HTTP load); movement: only compare's figures, on the"
        " main tenant alone; snapshot: only"
        " the snapshot of many small tenants; http: only the HTTP tenant mix and noisy"
        " neighbour; import: only import of the large tenant as a Salesforce export against"
        " load of it; history: only recorded history (runs as recorded, backfill, size) on"
        " the main tenant; calibration: only calibration over 8 past quarters of the main"
        " tenant's principals, and a batch with and without hit_probability; citus: runs"
        " on a Citus cluster (--citus-url) against the same runs on plain PostgreSQL",
    )
    parser.add_argument(
        "--citus-url",
        default=os.environ.get("CITUS_DATABASE_URL"),
        help="--only citus: the cluster's coordinator (default: $CITUS_DATABASE_URL)",
    )
    parser.add_argument(
        "--citus-deals", type=int, default=200_000, help="--only citus: deals of each tenant"
    )
    parser.add_argument(
        "--import-xlsx-deals",
        type=int,
        default=200_000,
        help="deals of the XLSX export the import figures read (a workbook of a million"
        " rows takes minutes to write)",
    )
    args = parser.parse_args()
    figures = run(args)
    table = Table(
        title=f"pipeline-coverage benchmark · {platform.node()} · "
        f"{os.cpu_count()} cores · {dt.date.today()}"
    )
    for column in ("figure", "value", "goal", "met"):
        table.add_column(column)
    for f in figures:
        table.add_row(f.name, f.value, f.goal, "" if f.met is None else ("yes" if f.met else "NO"))
    Console(width=140).print(table)
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in figures], indent=2))


if __name__ == "__main__":
    main()
