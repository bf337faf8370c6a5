"""The dashboard in a real browser (Debian's Chromium driven by Playwright): sign in
with an API key, see one bar per rep and team, press "Run now", see the new run."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.periods import quarter_of
from tests.factory import Crm

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("PIPELINE_COVERAGE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


def test_sign_in_see_chart_and_run_now(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Acme Dashboard")
    reps = [crm.user(tenant, name) for name in ("Ada", "Bo", "Cy")]
    crm.user(tenant, "Gone", active=False)
    team = crm.group(tenant, "East")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    start, end = quarter_of(dt.date.today())
    for n, rep in enumerate(reps):
        crm.deal(
            tenant,
            pipeline,
            stage,
            f"{(n + 1) * 1000}.00",
            expected=start,
            owner=rep,
            owner_group=team,
        )
        crm.target(tenant, "USER", rep, start, end, "1000.00")
    first_run = run_pipeline_coverage_batch(conn, tenant, start, end)
    _, key = create_api_key(conn, tenant, "browser test")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Record anything the Content-Security-Policy blocks (scripts, styles, requests).
    page.add_init_script(
        "window.cspViolations = [];"
        " document.addEventListener('securitypolicyviolation',"
        " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    loaded = page.goto(f"{live_server}/")
    assert loaded is not None
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_function(
        "id => document.getElementById('run-status').dataset.runId === id", arg=str(first_run)
    )
    assert page.inner_text("#tenant-name") == "Acme Dashboard"
    # One bar per principal in the run: three active reps and the team.
    assert page.evaluate("window.coverageChart.data.labels.length") == 4
    assert page.evaluate("window.coverageChart.data.datasets[0].data") == [3, 2, 1, 0]
    assert page.locator("#coverage-table tbody tr").count() == 4
    canvas = page.locator("#coverage-chart").bounding_box()
    assert canvas is not None
    assert canvas["width"] > 300
    assert canvas["height"] > 200

    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=str(first_run),
    )
    new_run = page.get_attribute("#run-status", "data-run-id")
    row = conn.execute(
        "SELECT count(*) FROM dyno_crm.report_run WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    conn.commit()
    assert row == (2,)
    assert new_run is not None
    assert new_run != str(first_run)

    # The trend of a rep over both runs.
    page.click("#coverage-table tbody tr >> nth=0")
    # A function, not an expression: an expression would need eval, which the page's
    # Content-Security-Policy forbids.
    page.wait_for_function("() => window.trendChart && window.trendChart.data.labels.length === 2")

    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    # The API key is never put in the page's URL.
    assert key not in page.url
    # The dashboard needs nothing its Content-Security-Policy forbids ...
    assert "script-src 'self'" in loaded.headers["content-security-policy"]
    assert page.evaluate("() => window.cspViolations") == []
    # ... and the policy is in force: an injected inline script does not run.
    ran = page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.injected = true'; document.body.appendChild(s);"
        " return window.injected === true; }"
    )
    assert ran is False
