"""The dashboard's import card, in a real browser (SPEC.md §12): an analyst dry-runs a
Salesforce report export with its teams file, imports it, runs coverage and sees the
team rolled up — no terminal; a bad file shows its ``file:line`` problems as text and
writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage.apikeys import create_api_key
from tests.e2e.test_dashboard import CHROMIUM, RECORD_CSP_VIOLATIONS, VIEWPORT, browser
from tests.e2e.test_dashboard import table as coverage_table
from tests.factory import Crm

__all__ = ["browser"]
pytestmark = pytest.mark.slow
EXPORTS = Path(__file__).parent.parent / "data" / "exports"


def deals_of(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM dyno_crm.deal").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def signed_in(browser: Any, live_server: str, key: str) -> Any:
    page = browser.new_page(viewport=VIEWPORT)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.goto(f"{live_server}/")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => !document.getElementById('dashboard').hidden")
    page.click("#import-card > summary")
    return page


def wait_for_status(page: Any, text: str) -> str:
    page.wait_for_function(
        "t => document.getElementById('import-status').textContent.includes(t)", arg=text
    )
    return str(page.inner_text("#import-status"))


def test_an_analyst_imports_an_export_and_runs_it(
    browser: Any, live_server: str, conn: psycopg.Connection[Any]
) -> None:
    assert CHROMIUM
    tenant = Crm(conn).tenant("Acme")
    conn.commit()
    _, key = create_api_key(conn, tenant, "browser test")
    page = signed_in(browser, live_server, key)

    page.set_input_files("#import-deals", str(EXPORTS / "salesforce-report.csv"))
    page.set_input_files("#import-teams", str(EXPORTS / "teams.csv"))
    page.click("#import-dry-run")
    status = wait_for_status(page, "Dry run")
    assert "would make 3 new" in status
    summary = page.inner_text("#import-summary")
    assert summary.startswith("dry run, nothing written: salesforce-report.csv")
    assert "teams would be created: 4" in summary
    assert deals_of(conn) == 0

    page.click("#import-run")
    status = wait_for_status(page, "Imported")
    assert status == "Imported: 3 new, 0 updated, 0 unchanged, 0 deleted."
    assert "reps created: 3 (Ana Silva, Ben Ode, Cleo Park)" in page.inner_text("#import-summary")
    assert deals_of(conn) == 3

    # The quarter of the deals, rolled up: the team counts its members' deals.
    page.fill("#period-start", "2026-01-01")
    page.fill("#period-end", "2026-04-01")
    page.check("#run-rollup")
    page.click("#run-now")
    page.wait_for_function("() => document.getElementById('run-status').dataset.runId")
    page.click("#tab-GROUP")
    rows = coverage_table(page)
    assert rows["East"]["Open (USD)"] == "120,000.00"
    assert rows["East"]["Won (USD)"] == "45,000.00"
    assert rows["Enterprise"]["Open (USD)"] == "120,000.00"
    assert page.evaluate("() => window.cspViolations") == []


def test_a_bad_file_shows_its_problems_as_text_and_writes_nothing(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    tenant = Crm(conn).tenant("Acme")
    conn.commit()
    _, key = create_api_key(conn, tenant, "browser test")
    page = signed_in(browser, live_server, key)
    text = (EXPORTS / "salesforce-report.csv").read_text()
    broken = tmp_path / "<img src=x onerror=alert(1)>.csv"
    broken.write_text(text.replace('"3/31/2026"', '"31/3/2026"'))
    page.set_input_files("#import-deals", str(broken))
    page.select_option("#import-format", "salesforce")
    page.click("#import-run")
    status = wait_for_status(page, "Nothing was imported")
    assert status == "Nothing was imported: 1 problem to fix."
    [problem] = page.locator("#import-problems li").all_inner_texts()
    assert problem.startswith("<img src=x onerror=alert(1)>.csv:2: Close Date:"), problem
    assert page.locator("#import-problems img").count() == 0
    assert deals_of(conn) == 0
