"""``python -m bench --only history`` (also part of a whole ``make bench``): recorded
history (SPEC.md §13) on the main tenant.

The tenant is loaded as a year-old export, then 52 weekly exports each change 2% of
its deals (amount, expected close date or stage, drawn at random) through
``load_tables`` with the week's time. Then, on a database of its own:

- a batch as recorded on a day mid-year against the same batch (same period and
  ``as_of``) on current data — medians;
- ``backfill`` of the 52 weeks (two runs a week: this and next quarter) against 52
  batches;
- the history's size: the deal table and its versions against the deal table plus
  what changed (the changed deals' rows at the deal table's bytes per row).

Figures and ratios, never a pass or fail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console

from bench.generate import TenantSpec, generate
from pipeline_coverage.importing.load import load_directory, load_tables
from pipeline_coverage.periods import quarter_of
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from pipeline_coverage.reports.snapshot import backfill

#: The goals (SPEC.md §13's issue): a run as recorded against one on current data, a
#: backfill of 52 weeks against 52 batches, the history's size against the deals'.
RECORDED_GOAL = 1.5
BACKFILL_GOAL = 1.0
SIZE_GOAL = 1.2
WEEKS = 52
CHANGED_SHARE = 0.02
COLUMNS = (
    "id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
    "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
    "assigned_group_id", "forecast_category", "currency",
)  # fmt: skip
#: A figure: its name, value, goal and whether the goal is met (None: no goal).
FigureRow = tuple[str, str, str, bool | None]


def weekly_changes(
    conn: psycopg.Connection[Any], tenant: Any, rng: random.Random, at: dt.datetime, share: float
) -> int:
    """One week's export: ``share`` of the tenant's deals changed (amount, expected close
    date, or stage within the pipeline), written as recorded at ``at``. Returns how many."""
    total = conn.execute(
        "SELECT count(*) FROM dyno_crm.deal WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    assert total is not None
    picked = conn.execute(
        sql.SQL(
            "SELECT {} FROM dyno_crm.deal WHERE tenant_id = %s ORDER BY random() LIMIT %s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS))),
        (tenant, int(total[0] * share)),
    ).fetchall()
    stages: dict[Any, list[Any]] = {}
    for pipeline, stage in conn.execute(
        "SELECT pipeline_id, id FROM dyno_crm.pipeline_stage WHERE tenant_id = %s", (tenant,)
    ).fetchall():
        stages.setdefault(pipeline, []).append(stage)
    conn.commit()
    rows = []
    for found in picked:
        row = list(found)
        what = rng.random()
        if what < 0.4:
            row[5] = Decimal(rng.randint(100, 10_000_000)) / 100
        elif what < 0.7:
            row[6] = (row[6] or at.date()) + dt.timedelta(days=rng.randint(-20, 40))
        else:
            row[3] = rng.choice(stages[row[2]])
        rows.append((0, row))
    load_tables(conn, {"deals.csv": rows}, recorded_at=at)
    return len(rows)


def history_figures(server_url: str, args: argparse.Namespace) -> list[FigureRow]:
    """The history figures (name, value, goal, met), on a database of their own."""
    from bench.run import BENCH_DB, drop_database, fresh_database, median_ms

    console = Console(stderr=True)
    # The last weekly export an hour ago (an export in the future is refused).
    first_export = dt.datetime.now(dt.UTC) - dt.timedelta(weeks=WEEKS, hours=1)
    start = first_export.date()
    spec = TenantSpec("main", args.deals, args.users, args.groups, args.pipelines)
    mid = start + dt.timedelta(days=7 * WEEKS // 2)
    period = quarter_of(mid)
    rows: list[FigureRow] = []
    url = fresh_database(server_url, f"{BENCH_DB}_history")
    with tempfile.TemporaryDirectory() as folder, psycopg.connect(url) as conn:
        console.print(f"history: generating and loading {args.deals:,} deals ...")
        [main] = generate(Path(folder), [spec], period[0])  # (deals around mid-year)
        load_directory(conn, Path(folder), recorded_at=first_export)
        rng = random.Random(13)
        console.print(f"history: {WEEKS} weekly exports, {CHANGED_SHARE:.0%} changed each ...")
        changed = 0
        started = time.perf_counter()
        for week in range(1, WEEKS + 1):
            at = first_export + dt.timedelta(weeks=week)
            changed += weekly_changes(conn, main.tenant_id, rng, at, CHANGED_SHARE)
        written = time.perf_counter() - started
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        rows.append(
            (f"history: {WEEKS} weekly exports of {changed // WEEKS:,} changed deals each",
             f"{written:.1f} s ({changed / written:,.0f} changed deals/s)", "", None)
        )  # fmt: skip

        def batch(recorded: bool) -> None:
            request = coverage_request(main.tenant_id, *period, as_of=mid, as_recorded=recorded)
            run_coverage(conn, request)

        console.print("history: a batch on current data and as recorded ...")
        current = median_ms(lambda: batch(False), args.repeat) / 1000
        recorded = median_ms(lambda: batch(True), args.repeat) / 1000
        ratio = recorded / current
        rows.append(
            (f"history: batch as recorded on {mid} vs on current data (same period, as_of)",
             f"{recorded * 1000:.0f} vs {current * 1000:.0f} ms ({ratio:.2f}x)",
             f"<= {RECORDED_GOAL}x", ratio <= RECORDED_GOAL)
        )  # fmt: skip

        console.print(f"history: backfill of {WEEKS} weeks ...")
        days = [start + dt.timedelta(days=7 * week) for week in range(WEEKS)]
        started = time.perf_counter()
        taken = backfill(conn, main.tenant_id, days)
        seconds = time.perf_counter() - started
        runs = sum(len(runs) for _, runs in taken)
        failed = sum(one.error is not None for _, runs in taken for one in runs)
        ratio = seconds / (WEEKS * current)
        rows.append(
            (f"history: backfill of {WEEKS} weeks ({runs} runs: this and next quarter;"
             f" {failed} failed) vs {WEEKS} batches",
             f"{seconds:.1f} s ({ratio:.2f}x {WEEKS} batches; {seconds / runs * 1000:.0f} ms"
             f" a run = {seconds / runs / current:.2f}x a batch)", f"<= {BACKFILL_GOAL:g}x",
             ratio <= BACKFILL_GOAL)
        )  # fmt: skip

        sizes = conn.execute(
            "SELECT pg_total_relation_size('dyno_crm.deal'),"
            " pg_total_relation_size('dyno_crm.deal_version'),"
            " (SELECT count(*) FROM dyno_crm.deal), (SELECT count(*) FROM dyno_crm.deal_version)"
        ).fetchone()
        conn.commit()
        assert sizes is not None
        deal_bytes, version_bytes, deals, versions = (int(value) for value in sizes)
        per_deal = deal_bytes / deals
        floor = deal_bytes + changed * per_deal
        ratio = (deal_bytes + version_bytes) / floor
        rows.append(
            (f"history: size after {WEEKS} weeks ({versions:,} versions of {deals:,} deals)",
             f"{(deal_bytes + version_bytes) / 2**20:,.0f} MB = {ratio:.2f}x the deals plus"
             f" what changed ({floor / 2**20:,.0f} MB); {version_bytes / versions:,.0f} bytes"
             f" a changed deal ({per_deal:,.0f} a deal row)", f"<= {SIZE_GOAL}x",
             ratio <= SIZE_GOAL)
        )  # fmt: skip
    drop_database(server_url, f"{BENCH_DB}_history")
    return rows
