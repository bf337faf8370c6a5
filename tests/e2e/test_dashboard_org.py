"""The dashboard's period picker and roll-up toggle, in a real browser (SPEC.md §10).

A tenant whose fiscal year starts in July has targets for a past fiscal quarter only:
the dashboard opens on that quarter (not on an empty current one), its picker names
the periods in the fiscal calendar, and a rolled-up run shows a region's team targets
beside its own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.periods import fiscal_quarter_of, period_name
from tests.e2e.test_dashboard import (
    CHROMIUM,
    SCREENSHOTS,
    VIEWPORT,
    browser,
    headers,
    row_order,
    screenshot,
)
from tests.e2e.test_dashboard import table as coverage_table
from tests.factory import Crm

__all__ = ["browser"]  # the fixture, shared with the other dashboard tests
pytestmark = pytest.mark.slow
PAST = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))  # FY2026-Q3 when the year starts in July


def test_opens_on_a_period_with_targets_and_runs_rolled_up(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert CHROMIUM
    crm = Crm(conn)
    tenant = crm.tenant("Fiscal Org")
    conn.execute("UPDATE dyno_crm.tenant SET fiscal_year_start_month = 7 WHERE id = %s", (tenant,))
    region = crm.group(tenant, "Region")
    east = crm.group(tenant, "East", parent=region)
    west = crm.group(tenant, "West", parent=region)
    ada, bo = crm.user(tenant, "Ada"), crm.user(tenant, "Bo")
    crm.member(tenant, east, ada)
    crm.member(tenant, west, bo)
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    day = dt.date(2026, 2, 1)
    crm.deal(tenant, pipeline, stage, "400.00", day, owner=ada)
    crm.deal(tenant, pipeline, stage, "250.00", day, owner=bo)
    for who, amount in ((region, "1000.00"), (east, "600.00"), (west, "500.00")):
        crm.target(tenant, "GROUP", who, *PAST, amount)
    conn.commit()
    # A plain run of the quarter, a week old: not comparable with a rolled-up one.
    plain = run_pipeline_coverage_batch(conn, tenant, *PAST, as_of=dt.date(2026, 2, 1))
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '8 days'"
        " WHERE tenant_id = %s AND id = %s",
        (tenant, plain),
    )
    conn.commit()
    _, key = create_api_key(conn, tenant, "browser test")

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{live_server}/")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('period-picker').options.length > 1")
    # Opened on the quarter with targets, named in the fiscal calendar; the current
    # fiscal quarter is listed too, and "Custom dates".
    assert (page.input_value("#period-start"), page.input_value("#period-end")) == (
        "2026-01-01",
        "2026-04-01",
    )
    options = page.locator("#period-picker option").all_inner_texts()
    current = fiscal_quarter_of(dt.date.today(), 7)
    assert options == [
        f"{period_name(*current, 7)} · current",
        "FY2026-Q3 · 3 targets, 1 run",
        "Custom dates",
    ]
    assert page.input_value("#period-picker") == "2026-01-01/2026-04-01"
    page.wait_for_function("() => document.getElementById('run-status').dataset.runId")
    assert page.get_attribute("#run-status", "data-run-id") == str(plain)
    title = "FY2026-Q3 · 2026-01-01 \u2013 2026-03-31"  # an en dash
    assert page.inner_text("#run-title") == title

    page.check("#run-rollup")
    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=str(plain),
    )
    assert "teams rolled up" in page.inner_text("#run-status")
    # The quarter is over: the run is as of its last day, not of today.
    assert "as of 2026-03-31" in page.inner_text("#run-status")
    assert "rolled up" in page.locator("#run-select option").all_inner_texts()[0]
    # The picker counts the new run.
    page.wait_for_function(
        "() => [...document.getElementById('period-picker').options]"
        ".some(o => o.textContent.includes('2 runs'))"
    )
    # The movement card compares only runs of one kind: the plain run is not offered.
    page.wait_for_function(
        "() => document.getElementById('movement-summary').textContent.includes('of its kind')"
    )
    assert page.inner_text("#movement-error") == ""
    assert page.locator("#movement-from option").count() == 0
    page.click("#tab-GROUP")
    assert "Member targets (USD)" in headers(page)
    rows = coverage_table(page)
    region_row = rows["Region"]
    assert (region_row["Target (USD)"], region_row["Member targets (USD)"]) == (
        "1,000.00",
        "1,100.00",
    )
    assert region_row["Open (USD)"] == "650.00"
    assert rows["East"]["Open (USD)"] == "400.00"
    assert rows["East"]["Member targets (USD)"] == "—"
    # The teams as their tree (the server's order and depth): Region, then East and
    # West under it — not the flat order by coverage (East, Region, West).
    assert row_order(page) == ["Region", "East", "West"]
    depths = page.evaluate(
        "() => [...document.querySelectorAll('#coverage-table tbody th')]"
        ".map(th => [th.textContent, th.dataset.depth || '0', th.title])"
    )
    assert depths == [["Region", "0", ""], ["East", "1", "in Region"], ["West", "1", "in Region"]]
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    page.locator("#coverage-table").scroll_into_view_if_needed()
    screenshot(page, folder, "dashboard-rollup.png")
    page.locator("#coverage-table").screenshot(path=str(folder / "dashboard-team-tree.png"))
    # Sorted by a column, the table is a plain list again.
    page.click("#coverage-table th[data-key='open_amount'] button")
    assert row_order(page) == ["Region", "East", "West"]  # (650, 400, 250: by open, down)
    assert page.locator("#coverage-table tbody th[data-depth]").count() == 0

    # Picking another period shows it (the current quarter has no run).
    page.select_option("#period-picker", f"{current[0]}/{current[1]}")
    page.wait_for_function(
        "() => document.getElementById('run-title').textContent.startsWith('No run')"
    )
    assert page.input_value("#period-start") == current[0].isoformat()


def test_a_tenant_with_roll_up_by_default_opens_on_and_runs_rolled_up(
    browser: Any, live_server: str, conn: psycopg.Connection[Any]
) -> None:
    """The session's run_defaults: the dashboard opens on the newest run made with the
    tenant's defaults (not a newer plain one), its roll-up box starts ticked, and Run
    now makes a rolled-up run; unticked, a plain one."""
    from pipeline_coverage.tenants import set_run_defaults

    crm = Crm(conn)
    tenant = crm.tenant("Rolled Org")
    team = crm.group(tenant, "Team")
    ada = crm.user(tenant, "Ada")
    crm.member(tenant, team, ada)
    pipeline = crm.pipeline(tenant)
    crm.deal(tenant, pipeline, crm.stage(tenant, pipeline), "400.00", dt.date(2026, 2, 1),
             owner=ada)  # fmt: skip
    crm.target(tenant, "GROUP", team, *PAST, "1000.00")
    rolled = run_pipeline_coverage_batch(conn, tenant, *PAST, rollup=True)
    run_pipeline_coverage_batch(conn, tenant, *PAST, rollup=False)  # newer, not the default
    set_run_defaults(conn, tenant, rollup=True)
    _, key = create_api_key(conn, tenant, "browser test")

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{live_server}/")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('run-status').dataset.runId")
    assert page.get_attribute("#run-status", "data-run-id") == str(rolled)
    assert page.is_checked("#run-rollup")

    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=str(rolled),
    )
    made = page.get_attribute("#run-status", "data-run-id")
    assert "teams rolled up" in page.inner_text("#run-status")
    page.uncheck("#run-rollup")
    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=made,
    )
    assert "teams rolled up" not in page.inner_text("#run-status")
    page.close()
