"""The dashboard's calibrated line in a real browser (SPEC.md §14): beside the 3x line,
the coverage this tenant's past quarters say gives an 80% chance at the run's week,
drawn at the stored fit's value, with the server's sentence above the chart.

With ``PIPELINE_COVERAGE_SCREENSHOTS=docs/images`` it writes
``dashboard-calibration.png``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.calibration import calibrate
from tests.calibration_world import quarter_starts, write_history
from tests.e2e.test_dashboard import SCREENSHOTS, assert_csp_held, browser, screenshot, sign_in
from tests.factory import Crm

pytestmark = pytest.mark.slow
__all__ = ["browser"]

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))


def test_the_calibrated_line_stands_beside_the_3x_line(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Calibrated Dashboard")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    for name, target, open_amount in (("Ada", "10000", "42000"), ("Ben", "12000", "30000"),
                                      ("Cy", "8000", "12000"), ("Di", "9000", "6000"),
                                      ("Ed", "10000", "21000")):  # fmt: skip
        rep = crm.user(tenant, name)
        crm.target(tenant, "USER", rep, *Q1, target)
        crm.deal(tenant, pipeline, stage, open_amount, dt.date(2026, 3, 15), owner=rep)
    _, key = create_api_key(conn, tenant, "dashboard")
    conn.commit()
    write_history(conn, tenant, [uuid.UUID(int=n + 1) for n in range(150)],
                  quarter_starts(dt.date(2024, 1, 1), 8))  # fmt: skip
    calibrate(conn, tenant, as_of=dt.date(2026, 1, 5))
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=dt.date(2026, 2, 10))
    [stored] = conn.execute(
        "SELECT coverage_80 FROM dyno_crm.calibration_fit"
        " WHERE tenant_id = %s AND principal_type = 'USER' AND week = 6",
        (tenant,),
    ).fetchone() or [None]
    assert isinstance(stored, Decimal)

    page, loaded = sign_in(browser, live_server, key, run_id)
    note = page.text_content("#calibration-note") or ""
    assert note.startswith(f"Reps: needs {stored:.1f}x at week 6 for 80% (50% at ")
    assert page.is_visible("#calibration-legend")
    line = page.evaluate(
        "() => { const p = window.coverageChart.config.plugins.find(p => p.id ="
        "== 'calibratedLine'); return p && p.value; }"
    )
    assert line == pytest.approx(float(stored))
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    screenshot(page, folder, "dashboard-calibration.png")

    # Teams: no GROUP fit, so no line, and the sentence says why.
    page.click("#tab-GROUP")
    assert page.is_hidden("#calibration-legend")
    assert (page.text_content("#calibration-note") or "").startswith(
        "Teams: no hit probability: not calibrated yet"
    )
    assert_csp_held(page, loaded)
