"""The dashboard in a real browser (Debian's Chromium driven by Playwright).

The first test signs in, sees one bar per rep, presses "Run now", sees the new run and
a trend. The second builds a tenant with every case the dashboard must show apart — a
rep past target (quota met), reps short of it, a team without a target, an undated
deal, two pipelines — and checks what is drawn: the chart's data and labels, the
table's columns (from the metric registry), the exclusions banner, the reps' and
teams' views with the tenant total, the deals behind a bar or a row (their total is
the row's number, to the cent), and a by-pipeline run.

With ``PIPELINE_COVERAGE_SCREENSHOTS=docs/images`` the second test writes the
screenshots the docs show (``dashboard.png``, ``dashboard-deals.png``,
``dashboard-teams.png``, ``dashboard-by-pipeline.png``); otherwise they go to a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.metrics import BY_NAME, HEADLINE, NAMES, SEED
from pipeline_coverage.periods import quarter_of
from tests.factory import Crm

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("PIPELINE_COVERAGE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("PIPELINE_COVERAGE_SCREENSHOTS")
VIEWPORT = {"width": 1280, "height": 900}
# Record anything the Content-Security-Policy blocks (scripts, styles, requests).
RECORD_CSP_VIOLATIONS = (
    "window.cspViolations = [];"
    " document.addEventListener('securitypolicyviolation',"
    " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


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


# --- helpers that read the page (functions, never expressions: an expression would
# --- need eval, which the page's Content-Security-Policy forbids) -------------------


def sign_in(browser: Any, live_server: str, key: str, run_id: uuid.UUID) -> tuple[Any, Any]:
    """A page signed in with ``key``, showing ``run_id``; and the page's response."""
    page = browser.new_page(viewport=VIEWPORT)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    loaded = page.goto(f"{live_server}/")
    assert loaded is not None
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    wait_for_run(page, run_id)
    return page, loaded


def wait_for_run(page: Any, run_id: uuid.UUID | str) -> None:
    page.wait_for_function(
        "id => document.getElementById('run-status').dataset.runId === id", arg=str(run_id)
    )


def chart(page: Any, name: str) -> dict[str, Any]:
    """A chart's labels and datasets, as drawn."""
    found: dict[str, Any] = page.evaluate(
        "name => { const c = window[name]; return c && { labels: c.data.labels,"
        " datasets: c.data.datasets.map(d => ({ label: d.label, data: d.data,"
        " colors: d.backgroundColor })),"
        " reference: (c.config.plugins.find(p => p.id === 'referenceLine') || {}).value }; }",
        name,
    )
    return found


def click_bar(page: Any, name: str, label: str) -> None:
    """Click, with the mouse, the middle of the bar labelled ``label``."""
    page.evaluate("name => window[name].canvas.scrollIntoView({ block: 'center' })", name)
    x, y = page.evaluate(
        "([name, label]) => { const c = window[name];"
        " const bar = c.getDatasetMeta(0).data[c.data.labels.indexOf(label)];"
        " const box = c.canvas.getBoundingClientRect();"
        " const horizontal = c.options.indexAxis === 'y';"
        " return horizontal ? [box.left + (bar.x + bar.base) / 2, box.top + bar.y]"
        " : [box.left + bar.x, box.top + (bar.y + bar.base) / 2]; }",
        [name, label],
    )
    page.mouse.click(x, y)


def headers(page: Any) -> list[str]:
    texts: list[str] = page.locator("#coverage-table thead th").all_inner_texts()
    return [text.strip(" ▲▼") for text in texts]


def table(page: Any) -> dict[str, dict[str, str]]:
    """The coverage table: each row's cells by column header, keyed by the row's label
    (the principal, and ``· pipeline`` for a by-pipeline run)."""
    names = headers(page)
    rows: dict[str, dict[str, str]] = {}
    for line in page.locator("#coverage-table tbody tr").all():
        cells = dict(zip(names, line.locator("th, td").all_inner_texts(), strict=True))
        label = cells[names[0]] + (f" · {cells['Pipeline']}" if "Pipeline" in cells else "")
        rows[label] = cells
    return rows


def row_order(page: Any) -> list[str]:
    texts: list[str] = page.locator("#coverage-table tbody tr th").all_inner_texts()
    return texts


def wait_for_deals(page: Any, key: str) -> None:
    page.wait_for_function(
        "key => { const card = document.getElementById('deals-card');"
        " return !card.hidden && card.dataset.key === key && card.dataset.loaded === 'true'; }",
        arg=key,
    )


def deal_totals(page: Any) -> dict[str, str]:
    """The deals panel's totals by class (OPEN, WON, LOST, UNDATED)."""
    found: dict[str, str] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#deals-totals [data-total]')]"
        ".map(el => [el.dataset.total, el.textContent]))"
    )
    return found


def deal_rows(page: Any) -> list[dict[str, str]]:
    names = ["deal", "class", "reason", "category", "stage", "date", "amount", "flags"]
    return [
        dict(zip(names, line.locator("td").all_inner_texts(), strict=True))
        for line in page.locator("#deals-table tbody tr").all()
    ]


def screenshot(page: Any, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def money(text: str | None) -> str:
    """How the dashboard writes an amount: 1,234.50, or an em dash for none."""
    return "—" if text is None else f"{Decimal(text):,.2f}"


def assert_csp_held(page: Any, loaded: Any) -> None:
    # The dashboard needs nothing its Content-Security-Policy forbids (no inline
    # script, no style attribute, no eval) ...
    assert "script-src 'self'" in loaded.headers["content-security-policy"]
    assert "style-src 'self'" in loaded.headers["content-security-policy"]
    assert page.evaluate("() => window.cspViolations") == []
    # ... and the policy is in force: an injected inline script does not run.
    ran = page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.injected = true'; document.body.appendChild(s);"
        " return window.injected === true; }"
    )
    assert ran is False


def make_legacy(conn: psycopg.Connection[Any], tenant: uuid.UUID, run: uuid.UUID) -> None:
    """Make ``run`` look like one stored before migration 0005: only the seed's
    columns, no drill-down."""
    newer = [name for name in NAMES if name not in SEED]
    conn.execute(
        sql.SQL(
            "UPDATE dyno_crm.report_pipeline_coverage_fact SET {}"
            " WHERE tenant_id = %s AND run_id = %s"
        ).format(sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(n)) for n in newer)),
        (tenant, run),
    )
    for table in ("report_run_credit", "report_run_deals"):
        conn.execute(
            sql.SQL("DELETE FROM dyno_crm.{} WHERE tenant_id = %s AND run_id = %s").format(
                sql.Identifier(table)
            ),
            (tenant, run),
        )
    conn.commit()


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
            expected=end - dt.timedelta(days=1),
            owner=rep,
            owner_group=team,
        )
        crm.target(tenant, "USER", rep, start, end, "1000.00")
    first_run = run_pipeline_coverage_batch(conn, tenant, start, end)
    # A run from before the metrics existed: the seed's coverage is all it has.
    make_legacy(conn, tenant, first_run)
    _, key = create_api_key(conn, tenant, "browser test")

    page, loaded = sign_in(browser, live_server, key, first_run)
    assert page.inner_text("#tenant-name") == "Acme Dashboard"
    # One bar per active rep, best coverage first (an old run: its seed coverage); the
    # team, without a target, is in its own view.
    drawn = chart(page, "coverageChart")
    assert drawn["labels"] == ["Cy", "Bo", "Ada"]
    assert drawn["datasets"][0]["data"] == [3, 2, 1]
    assert page.inner_text("#tab-USER") == "Reps (3)"
    assert page.locator("#coverage-table tbody tr").count() == 3
    assert page.locator("#exclusions").is_hidden()
    # Its rows have no deals kept: the panel says so instead of a wrong total.
    page.click("#coverage-table tbody tr >> nth=0")
    wait_for_deals(page, f"USER:{reps[2]}:")
    assert "stored before deals were kept" in page.inner_text("#deals-status")
    assert deal_totals(page) == {}
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
    # The run picker lists both runs of the period, the new one chosen.
    assert page.locator("#run-select option").count() == 2
    assert page.input_value("#run-select") == new_run

    # The new run has every metric: 3,000 open of a 1,000 target, nothing won yet.
    cy = table(page)["Cy"]
    assert (cy["Target (USD)"], cy["Open (USD)"], cy["Coverage of remaining"]) == (
        "1,000.00",
        "3,000.00",
        "3.00x",
    )
    # The trend of a rep: both runs are today's, one point (the day's last run); the
    # new run's deals behind its row.
    page.click("#coverage-table tbody tr >> nth=0")
    page.wait_for_function("() => window.trendChart && window.trendChart.data.labels.length === 1")
    wait_for_deals(page, f"USER:{reps[2]}:")
    assert deal_totals(page) == {"OPEN": "3,000.00 USD"}
    screenshot(page, tmp_path, "dashboard.png")
    # The API key is never put in the page's URL.
    assert key not in page.url
    assert_csp_held(page, loaded)

    page.click("#sign-out")
    page.wait_for_function("() => !document.getElementById('login').hidden")
    assert page.locator("#dashboard").is_hidden()


# --- a tenant with every case the dashboard tells apart ---------------------------------


@dataclass(frozen=True)
class Acme:
    tenant: uuid.UUID
    ada: uuid.UUID  # past target: quota met
    bo: uuid.UUID  # short of target, with an undated deal
    cy: uuid.UUID  # between the bands
    east: uuid.UUID  # a team with a target
    partners: uuid.UUID  # a team without one
    new_business: uuid.UUID
    renewals: uuid.UUID
    start: dt.date
    end: dt.date


def build_acme(conn: psycopg.Connection[Any]) -> Acme:
    crm = Crm(conn)
    tenant = crm.tenant("Acme Dashboard")
    start, end = quarter_of(dt.date.today())
    late = end - dt.timedelta(days=1)  # in the period, never before today: not past due
    before = start - dt.timedelta(days=30)  # in the win rate's lookback window
    new_business = crm.pipeline(tenant, "New business")
    renewals = crm.pipeline(tenant, "Renewals")
    stages = {
        pipeline: {
            state: crm.stage(tenant, pipeline, state, name)
            for state, name in (
                ("IN_PROGRESS", "Proposal"),
                ("DONE_SUCCESS", "Closed won"),
                ("DONE_FAILED", "Closed lost"),
            )
        }
        for pipeline in (new_business, renewals)
    }
    ada, bo, cy = (crm.user(tenant, name) for name in ("Ada", "Bo", "Cy"))
    crm.user(tenant, "Gone", active=False)
    east, partners = crm.group(tenant, "East"), crm.group(tenant, "Partners")

    def deal(pipeline: uuid.UUID, state: str, amount: str, **kw: Any) -> None:
        crm.deal(tenant, pipeline, stages[pipeline][state], amount, **kw)

    # Ada: 12,000.50 won against a 10,000 target.
    deal(new_business, "DONE_SUCCESS", "12000.50", close=start, owner=ada, owner_group=east)
    deal(renewals, "IN_PROGRESS", "3000.00", expected=late, owner=ada, owner_group=east)
    deal(new_business, "DONE_SUCCESS", "1000.00", close=before, owner=ada)
    deal(new_business, "DONE_FAILED", "1000.00", close=before, owner=ada)
    # Bo: far from his 20,000; cents that only add up exactly in integers; an undated deal.
    for amount in ("4000.10", "3000.10"):
        deal(new_business, "IN_PROGRESS", amount, expected=late, owner=bo, owner_group=east)
    deal(renewals, "IN_PROGRESS", "3000.05", expected=late, owner=bo, owner_group=east)
    deal(renewals, "DONE_SUCCESS", "1500.25", close=start, owner=bo, owner_group=east)
    deal(new_business, "DONE_FAILED", "800.00", close=start, owner=bo, owner_group=east)
    deal(renewals, "IN_PROGRESS", "2500.00", owner=bo)
    deal(new_business, "DONE_SUCCESS", "900.00", close=before, owner=bo)
    # Cy: 1,000 won of 5,000, 10,000 open: 2.5x the remaining 4,000.
    deal(new_business, "DONE_SUCCESS", "1000.00", close=start, owner=cy)
    deal(new_business, "IN_PROGRESS", "10000.00", expected=late, owner=cy)
    # Partners: a team without a target for the period (only one overlapping it, which
    # flags the row), with open pipeline.
    deal(renewals, "IN_PROGRESS", "7500.00", expected=late, owner_group=partners)
    crm.target(tenant, "GROUP", partners, start, end + dt.timedelta(days=31), "60000.00")
    # Targets per pipeline (a plain run adds them up; a by-pipeline run splits them).
    for principal_type, who, pipeline, amount in (
        ("USER", ada, new_business, "8000.00"),
        ("USER", ada, renewals, "2000.00"),
        ("USER", bo, new_business, "15000.00"),
        ("USER", bo, renewals, "5000.00"),
        ("USER", cy, new_business, "5000.00"),
        ("GROUP", east, new_business, "30000.00"),
    ):
        crm.target(tenant, principal_type, who, start, end, amount, pipeline)
    return Acme(tenant, ada, bo, cy, east, partners, new_business, renewals, start, end)


def api_rows(conn: psycopg.Connection[Any], run: uuid.UUID, tenant: uuid.UUID) -> Any:
    """The run's rows as the API serves them, by label."""
    from pipeline_coverage.render.values import run_document
    from pipeline_coverage.store import get_run

    rows = run_document(get_run(conn, run, tenant)).model_dump(mode="json")["rows"]
    conn.commit()
    return {
        row["principal_name"]
        + (f" · {row['pipeline_name']}" if row["pipeline_id"] is not None else ""): row
        for row in rows
    }


def test_dashboard_shows_remaining_coverage_deals_teams_and_pipelines(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    acme = build_acme(conn)
    pipeline_run = run_pipeline_coverage_batch(
        conn, acme.tenant, acme.start, acme.end, by_pipeline=True
    )
    plain_run = run_pipeline_coverage_batch(conn, acme.tenant, acme.start, acme.end)
    _, key = create_api_key(conn, acme.tenant, "browser test")
    served = api_rows(conn, plain_run, acme.tenant)
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    # The newest batch of the current quarter is shown.
    page, loaded = sign_in(browser, live_server, key, plain_run)

    # The header: the period, when it was generated, as of when; the run id small.
    last = (acme.end - dt.timedelta(days=1)).isoformat()
    quarter = f"{acme.start.year}-Q{(acme.start.month - 1) // 3 + 1}"  # (periods.period_name)
    assert (
        page.inner_text("#run-title") == f"{quarter} · {acme.start.isoformat()} \N{EN DASH} {last}"
    )
    status = page.inner_text("#run-status")
    assert "generated " in status
    assert f"as of {dt.date.today().isoformat()}" in status
    assert "amounts in USD" in status
    assert "3 reps, 2 teams" in status
    assert page.inner_text("#run-id") == str(plain_run)
    sizes = page.evaluate(
        "() => ['run-title', 'run-id'].map(id =>"
        " parseFloat(getComputedStyle(document.getElementById(id)).fontSize))"
    )
    assert sizes[1] * 1.5 < sizes[0]

    # The exclusions banner: the undated deal and the team's target period, in the
    # run's own words.
    assert page.locator("#exclusions").is_visible()
    assert page.locator("#exclusion-list li").all_inner_texts() == [
        "1 open deal worth 2,500.00 USD has no close date and counts in no period",
        "1 row has no target for exactly this period but targets overlapping it"
        " (use target_match=within, or the targets' own period)",
    ]

    # Reps and teams in separate views.
    assert page.inner_text("#tab-USER") == "Reps (3)"
    assert page.inner_text("#tab-GROUP") == "Teams (2)"
    assert page.get_attribute("#tab-USER", "aria-selected") == "true"

    # The reps' chart: coverage of the remaining quota, quota met first (as a full green
    # bar at the reference line), then the best coverage; attainment as a second series.
    drawn = chart(page, "coverageChart")
    assert drawn["labels"] == ["Ada", "Cy", "Bo"]
    bars, attainment = drawn["datasets"]
    assert bars["data"] == [3, 2.5, pytest.approx(0.5406)]  # 10,000.25 / 18,499.75
    assert bars["colors"] == ["#2f9e44", "#e0a100", "#d64545"]
    assert drawn["reference"] == 3
    assert attainment["data"] == pytest.approx([120.01, 20.0, 7.5])
    # The numbers behind it are the API's.
    assert served["Ada"]["remaining_coverage_ratio"] is None
    assert served["Ada"]["remaining_target"] == "0.00"
    assert served["Bo"]["remaining_coverage_ratio"] == "0.5406"
    # No rep lacks a target: no grey chart in this view.
    assert page.locator("#no-target-box").is_hidden()

    # The table's columns are the registry's headline, labelled by the registry.
    def labels(names: tuple[str, ...] | list[str]) -> list[str]:
        return [
            BY_NAME[name].label + (" (USD)" if BY_NAME[name].kind == "money" else "")
            for name in names
        ]

    assert headers(page) == ["Rep", *labels(HEADLINE)]  # no rep's row has a flag
    rows = table(page)
    assert list(rows) == ["Ada", "Cy", "Bo"]
    assert rows["Ada"] == {
        "Rep": "Ada",
        "Target (USD)": "10,000.00",
        "Won (USD)": "12,000.50",
        "Open (USD)": "3,000.00",
        "Coverage of remaining": "quota met",
        "Gap (USD)": "quota met",
    }
    # (stored by SPEC.md §8's formula: minus her open pipeline, which is no gap)
    assert served["Ada"]["pipeline_gap"] == "-3000.00"
    assert rows["Bo"]["Open (USD)"] == "10,000.25"
    assert rows["Bo"]["Won (USD)"] == "1,500.25"
    assert rows["Bo"]["Coverage of remaining"] == "0.54x"
    assert rows["Bo"]["Gap (USD)"] == money(served["Bo"]["pipeline_gap"])
    assert rows["Cy"]["Coverage of remaining"] == "2.50x"
    assert (
        page.locator("#coverage-table td[data-metric=remaining_coverage_ratio] .pill.met").count()
        == 1
    )

    # Sortable: by open pipeline, largest first, then smallest first.
    page.click("#coverage-table th[data-key=open_amount] button")
    assert row_order(page) == ["Bo", "Cy", "Ada"]
    assert (
        page.get_attribute("#coverage-table th[data-key=open_amount]", "aria-sort") == "descending"
    )
    page.click("#coverage-table th[data-key=open_amount] button")
    assert row_order(page) == ["Ada", "Cy", "Bo"]
    # Quota met sorts as the best coverage of the remaining quota.
    page.click("#coverage-table th[data-key=remaining_coverage_ratio] button")
    assert row_order(page) == ["Ada", "Cy", "Bo"]

    # The column picker adds any metric of the registry, formatted by its kind and unit.
    page.click("#column-picker summary")
    page.check("#column-options input[value=attainment_ratio]")
    page.check("#column-options input[value=open_count]")
    page.check("#column-options input[value=coverage_ratio]")
    assert headers(page) == [
        "Rep",
        *labels([*HEADLINE, "attainment_ratio", "open_count", "coverage_ratio"]),
    ]
    rows = table(page)
    assert [rows[name]["Attainment"] for name in ("Ada", "Bo", "Cy")] == ["120.0%", "7.5%", "20.0%"]
    assert [rows[name]["Open deals"] for name in ("Ada", "Bo", "Cy")] == ["1", "3", "1"]
    assert rows["Bo"]["Coverage"] == "0.50x"  # 10,000.25 / 20,000: raw coverage, for comparison
    page.click("#reset-columns")
    page.click("#column-picker summary")
    assert headers(page) == ["Rep", *labels(HEADLINE)]

    # The tenant total: the reps' rows added up, and what it means.
    total = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#total dd')]"
        ".map(dd => [dd.dataset.key, dd.textContent]))"
    )
    assert total == {
        "target_amount": "35,000.00 USD",
        "won_amount": "14,500.75 USD",
        "open_amount": "23,000.25 USD",
        "attainment_ratio": "41.4%",
        "remaining_target": "20,499.25 USD",
        "remaining_coverage_ratio": "1.12x",
        # Bo's 18,499.75 and Cy's 4,000 still to win, with their 20,000.25 open
        "shortfall_amount": "22,499.75 USD",
        "shortfall_coverage_ratio": "0.89x",
    }
    assert "sum of the reps' rows" in page.inner_text("#total-note")
    assert "reps over quota offset reps short of it" in page.inner_text("#total-note")
    assert "Teams are not added in" in page.inner_text("#total-note")
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, folder, "dashboard.png")

    # A bar's click opens the deals behind it; their total is the row's, to the cent.
    click_bar(page, "coverageChart", "Bo")
    wait_for_deals(page, f"USER:{acme.bo}:")
    assert page.inner_text("#deals-title") == "Deals behind Bo"
    totals = deal_totals(page)
    assert totals == {
        "OPEN": "10,000.25 USD",
        "WON": "1,500.25 USD",
        "LOST": "800.00 USD",
        "UNDATED": "2,500.00 USD",
    }
    assert totals["OPEN"] == rows["Bo"]["Open (USD)"] + " USD"
    assert totals["WON"] == rows["Bo"]["Won (USD)"] + " USD"
    assert "mismatch" not in page.inner_html("#deals-totals")
    deals = deal_rows(page)
    assert [d["class"] for d in deals] == ["Open", "Open", "Open", "Won", "Lost", "Undated"]
    assert sorted(d["amount"] for d in deals if d["class"] == "Open") == [
        "3,000.05",
        "3,000.10",
        "4,000.10",
    ]
    undated = deals[-1]
    assert (undated["date"], undated["flags"], undated["reason"]) == ("no date", "undated", "owner")
    assert deals[0]["category"] == "pipeline"
    assert deals[0]["date"] == (acme.end - dt.timedelta(days=1)).isoformat()
    # ... and its trend, over the plain runs of the period (one so far).
    page.wait_for_function("() => window.trendChart && window.trendChart.data.labels.length === 1")
    page.evaluate("() => document.getElementById('deals-card').scrollIntoView({ block: 'start' })")
    screenshot(page, folder, "dashboard-deals.png")

    # A table row's click does the same.
    page.click("#coverage-table tbody tr[data-key^='USER:" + str(acme.ada) + "']")
    wait_for_deals(page, f"USER:{acme.ada}:")
    assert deal_totals(page) == {"OPEN": "3,000.00 USD", "WON": "12,000.50 USD"}

    # The teams' view: East against its target; Partners, without one, in grey.
    page.click("#tab-GROUP")
    assert page.get_attribute("#tab-GROUP", "aria-selected") == "true"
    assert page.locator("#deals-card").is_hidden()  # Ada's deals went with the reps' view
    assert headers(page)[0] == "Team"
    drawn = chart(page, "coverageChart")
    assert drawn["labels"] == ["East"]
    assert drawn["datasets"][0]["data"] == [pytest.approx(0.7879)]  # 13,000.25 / 16,499.25
    assert drawn["reference"] == 3
    grey = chart(page, "noTargetChart")
    assert grey["labels"] == ["Partners"]
    assert grey["datasets"][0]["data"] == [7500]
    assert grey["datasets"][0]["colors"] == "#adb5bd"
    assert page.locator("#no-target-box").is_visible()
    rows = table(page)
    assert rows["Partners"]["Coverage of remaining"] == "no target"
    # Its row's flag: a target exists, for another period.
    assert rows["Partners"]["Flags"] == "target period mismatch"
    assert rows["East"]["Flags"] == ""
    assert rows["Partners"]["Open (USD)"] == "7,500.00"
    assert rows["East"]["Open (USD)"] == "13,000.25"
    page.evaluate("() => document.querySelector('.tabs').scrollIntoView({ block: 'start' })")
    screenshot(page, folder, "dashboard-teams.png")
    click_bar(page, "noTargetChart", "Partners")
    wait_for_deals(page, f"GROUP:{acme.partners}:")
    assert page.inner_text("#deals-title") == "Deals behind Partners (team)"
    assert deal_totals(page) == {"OPEN": "7,500.00 USD"}
    assert [d["reason"] for d in deal_rows(page)] == ["owner group"]

    # A by-pipeline run: one row per principal and pipeline, grouped by principal.
    page.select_option("#run-select", str(pipeline_run))
    wait_for_run(page, pipeline_run)
    assert "by pipeline" in page.inner_text("#run-status")
    page.click("#tab-USER")
    drawn = chart(page, "coverageChart")
    assert drawn["labels"] == [
        "Ada · New business",
        "Ada · Renewals",
        "Bo · New business",
        "Bo · Renewals",
        "Cy · New business",
    ]
    # Ada met the New business target, not the Renewals one (3,000 open / 2,000 to win).
    assert drawn["datasets"][0]["data"] == [
        3,
        1.5,
        pytest.approx(0.4667),
        pytest.approx(0.8572),
        2.5,
    ]
    assert headers(page) == ["Rep", "Pipeline", *labels(HEADLINE)]
    by_pipeline = api_rows(conn, pipeline_run, acme.tenant)
    rows = table(page)
    # Every row, grouped by rep; Cy's empty Renewals row is listed (not drawn).
    assert list(rows) == [*drawn["labels"][:4], "Cy · New business", "Cy · Renewals"]
    assert rows["Ada · New business"]["Coverage of remaining"] == "quota met"
    assert rows["Cy · Renewals"]["Coverage of remaining"] == "no target"
    assert rows["Bo · Renewals"]["Open (USD)"] == money(by_pipeline["Bo · Renewals"]["open_amount"])
    # The tenant total of a by-pipeline run adds up every rep's pipelines.
    assert page.inner_text("#total dd[data-key=open_amount]") == "23,000.25 USD"
    assert page.locator("#no-target-box").is_hidden()  # Cy's Renewals row has nothing open
    click_bar(page, "coverageChart", "Bo · Renewals")
    wait_for_deals(page, f"USER:{acme.bo}:{acme.renewals}")
    assert page.inner_text("#deals-title") == "Deals behind Bo · Renewals"
    totals = deal_totals(page)
    assert totals == {"OPEN": "3,000.05 USD", "WON": "1,500.25 USD", "UNDATED": "2,500.00 USD"}
    assert totals["OPEN"] == rows["Bo · Renewals"]["Open (USD)"] + " USD"
    assert [d["class"] for d in deal_rows(page)] == ["Open", "Won", "Undated"]
    # The trend of one pipeline's row: its points only.
    page.wait_for_function("() => window.trendChart && window.trendChart.data.labels.length === 1")
    page.evaluate("() => document.querySelector('.tabs').scrollIntoView({ block: 'start' })")
    screenshot(page, folder, "dashboard-by-pipeline.png")

    # Run now with "by pipeline": a new by-pipeline run of the period, shown.
    page.check("#run-by-pipeline")
    page.click("#run-now")
    page.wait_for_function(
        "ids => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && !ids.includes(s); }",
        arg=[str(plain_run), str(pipeline_run)],
    )
    new_run = page.get_attribute("#run-status", "data-run-id")
    stored = conn.execute(
        "SELECT parameters->>'by_pipeline' FROM dyno_crm.report_run"
        " WHERE tenant_id = %s AND id = %s",
        (acme.tenant, new_run),
    ).fetchone()
    conn.commit()
    assert stored == ("true",)
    assert page.locator("#run-select option").count() == 3
    assert chart(page, "coverageChart")["labels"][0] == "Ada · New business"
    # The trend of a by-pipeline row: both by-pipeline runs are today's, so one point
    # per day is one point — the newer run's.
    page.click("#coverage-table tbody tr >> nth=0")
    page.wait_for_function("() => window.trendChart && window.trendChart.data.labels.length === 1")

    assert key not in page.url
    assert_csp_held(page, loaded)


def test_run_now_as_recorded_on_a_day_shows_the_deals_as_they_stood_then(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A rep's deal raised by an export today: "as recorded on" yesterday computes the run
    from the deals as they stood then (the old amount), and the page says so first."""
    from pipeline_coverage.importing.load import load_tables

    crm = Crm(conn)
    tenant = crm.tenant("Acme Recorded")
    rep = crm.user(tenant, "Ada")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    start, end = quarter_of(dt.date.today())
    deal = crm.deal(tenant, pipeline, stage, "1000.00", expected=end - dt.timedelta(days=1),
                    owner=rep)  # fmt: skip
    crm.target(tenant, "USER", rep, start, end, "1000.00")
    raised = [deal, tenant, pipeline, stage, "D", Decimal("5000.00"), end - dt.timedelta(days=1),
              None, rep, None, None, None, None, None]  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    load_tables(conn, {"deals.csv": [(2, raised)]}, recorded_at=now - dt.timedelta(minutes=1))
    first_run = run_pipeline_coverage_batch(conn, tenant, start, end)
    _, key = create_api_key(conn, tenant, "browser test")
    page, _ = sign_in(browser, live_server, key, first_run)
    assert table(page)["Ada"]["Open (USD)"] == "5,000.00"
    yesterday = (now - dt.timedelta(days=1)).date()
    page.check("#run-as-recorded")
    page.fill("#run-recorded-day", yesterday.isoformat())
    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=str(first_run),
    )
    assert page.inner_text("#run-status").startswith(
        f"As recorded: the deals as they stood at the end of {yesterday.isoformat()}"
    )
    assert table(page)["Ada"]["Open (USD)"] == "1,000.00"
    assert "as recorded on" in page.inner_text("#run-select")
