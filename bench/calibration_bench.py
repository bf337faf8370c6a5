"""``make bench BENCH_ARGS='--only calibration'``: coverage calibration (SPEC.md §14).

The main tenant (generated and loaded) gets a synthetic history of 8 past quarters —
a batch run a week and a closing run each, with a row per principal (its 2,000 reps
and 200 teams, 2,220 rows a run, written as reps: tests/calibration_world.py's known
truth) — then: the time of ``calibrate`` over it (statsmodels already imported; its
import, once per process, is a figure of its own), and this quarter's batch run with
the column filled (a fit at the run's week) against without it (no fit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from rich.console import Console
from tests.calibration_world import write_history

from bench.generate import TenantSpec, generate
from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.calibration import calibrate
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.periods import add_months, quarter_of

FigureRow = tuple[str, str, str, bool | None]
QUARTERS = 8


def calibration_figures(server_url: str, args: argparse.Namespace) -> list[FigureRow]:
    from bench.run import BENCH_DB, drop_database, fresh_database

    console = Console(stderr=True)
    start, end = quarter_of(dt.date.today())
    as_of = start + dt.timedelta(days=7 * 5 + 2)  # week 6 of this quarter
    past = [(add_months(start, -3 * back), add_months(start, 3 - 3 * back))
            for back in range(QUARTERS, 0, -1)]  # fmt: skip
    spec = TenantSpec("main", args.deals, args.users, args.groups, args.pipelines)
    url = fresh_database(server_url, f"{BENCH_DB}_calibration")
    rows: list[FigureRow] = []
    with tempfile.TemporaryDirectory() as folder, psycopg.connect(url) as conn:
        console.print(f"calibration: generating and loading {args.deals:,} deals ...")
        [main] = generate(Path(folder), [spec], start)
        load_directory(conn, Path(folder))
        principals = [*main.users, *main.groups]
        console.print(f"calibration: {QUARTERS} past quarters x 14 runs x {len(principals):,} ...")
        began = time.perf_counter()
        write_history(conn, main.tenant_id, principals, past)
        written = time.perf_counter() - began
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        rows.append((f"calibration: write {QUARTERS} quarters x 14 runs x {len(principals):,}"
                     " rows (synthetic)", f"{written:.1f} s", "", None))  # fmt: skip

        began = time.perf_counter()
        import statsmodels.api  # noqa: F401  (what the first calibration of a process pays)

        rows.append(("calibration: import statsmodels (once per process)",
                     f"{time.perf_counter() - began:.2f} s", "", None))  # fmt: skip
        times = []
        for _ in range(max(3, args.repeat // 3)):
            began = time.perf_counter()
            found = calibrate(conn, main.tenant_id, as_of=start)
            times.append(time.perf_counter() - began)
        took = statistics.median(times)
        observations = sum(report.observations for report in found.weeks)
        rows.append((f"calibration: {len(found.quarters_used)} quarters x 13 weeks,"
                     f" {observations:,} observations, fit + backtest",
                     f"{took:.2f} s", "<= 2 s", took <= 2.0))  # fmt: skip
        b = found.backtest
        lowest = (b.calibrated or 1) < min(b.rule or 1, b.base_rate or 1)
        rows.append(("calibration: backtest Brier calibrated / 3x rule / base rate",
                     f"{b.calibrated:.4f} / {b.rule:.4f} / {b.base_rate:.4f}",
                     "calibrated lowest", lowest))  # fmt: skip

        def batch() -> float:
            began = time.perf_counter()
            run_pipeline_coverage_batch(conn, main.tenant_id, start, end, as_of=as_of)
            return time.perf_counter() - began

        console.print("calibration: batches with and without the column ...")
        with_fit, without_fit = [], []
        batch()  # warm-up
        for _ in range(args.repeat):  # interleaved: both see the same cache and load
            calibrate(conn, main.tenant_id, as_of=start)
            with_fit.append(batch())
            conn.execute("DELETE FROM dyno_crm.calibration_fit WHERE tenant_id = %s",
                         (main.tenant_id,))  # fmt: skip
            conn.commit()
            without_fit.append(batch())
        filled, empty = statistics.median(with_fit), statistics.median(without_fit)
        rows.append(("calibration: batch with hit_probability", f"{filled * 1000:.0f} ms", "",
                     None))  # fmt: skip
        rows.append(("calibration: batch without (no fit)", f"{empty * 1000:.0f} ms", "", None))
        cost = filled / empty - 1
        rows.append(("calibration: what the column adds to a batch", f"{cost:+.1%}", "<= 10%",
                     cost <= 0.10))  # fmt: skip
    drop_database(server_url, f"{BENCH_DB}_calibration")
    return rows
