"""The dashboard's trends in a real browser: a rep's trend on a real time axis (one
point per day, the day's last run), the same point of the previous quarters, and
"Export CSV" of its tables — each checked against the oracle's numbers for the runs
the test made.

With ``PIPELINE_COVERAGE_SCREENSHOTS=docs/images`` it writes ``dashboard-trends.png``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import coverage_request, run_coverage
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.periods import add_months, quarter_of
from pipeline_coverage.render import CSV_COLUMNS
from tests.e2e.test_dashboard import SCREENSHOTS, browser, sign_in, wait_for_deals
from tests.factory import Crm
from tests.oracle import Options, Oracle

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the fixture, shared with the dashboard's other test


def epoch_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def drawn(page: Any, name: str) -> dict[str, Any]:
    """A chart's labels, its datasets' points and its x-axis, as drawn."""
    found: dict[str, Any] = page.evaluate(
        "name => { const c = window[name]; return c && { labels: c.data.labels,"
        " data: c.data.datasets.map(d => d.data), x: { type: c.scales.x.type,"
        " min: c.scales.x.min, max: c.scales.x.max } }; }",
        name,
    )
    return found


def ratio(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def download(page: Any, selector: str) -> list[list[str]]:
    with page.expect_download() as info:
        page.click(selector)
    path = info.value.path()
    return list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def test_trend_by_day_same_point_and_csv_export(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Trend Dashboard")
    ada = crm.user(tenant, "Ada")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    start, end = quarter_of(dt.date.today())
    quarters = [(add_months(start, -3 * back), add_months(start, 3 - 3 * back)) for back in
                (3, 2, 1, 0)]  # fmt: skip
    moving = {}
    for q_start, q_end in quarters:
        moving[q_start] = crm.deal(tenant, pipeline, stage, "1000", q_start + dt.timedelta(days=40),
                                   owner=ada)  # fmt: skip
        crm.deal(
            tenant, pipeline, won_stage, "250", close=q_start + dt.timedelta(days=1), owner=ada
        )
        crm.target(tenant, "USER", ada, q_start, q_end, "2000")
    oracle_rows: dict[uuid.UUID, dict[str, Any]] = {}

    def run_on(period: tuple[dt.date, dt.date], day: dt.date, amount: str) -> uuid.UUID:
        conn.execute("UPDATE dyno_crm.deal SET amount = %s WHERE id = %s",
                     (Decimal(amount), moving[period[0]]))  # fmt: skip
        conn.commit()
        run_id = run_coverage(conn, coverage_request(tenant, *period, as_of=day)).run_id
        oracle_rows[run_id] = Oracle(conn, tenant).row(Options(*period, as_of=day), "USER", ada,
                                                       None)  # fmt: skip
        return run_id

    current = quarters[-1]
    # The quarter's runs: day 3, day 6 twice (the later one counts), day 10 (shown).
    day = [start + dt.timedelta(days=n) for n in (2, 5, 9)]
    runs = [run_on(current, day[0], "3000"), run_on(current, day[1], "4000.50")]
    runs += [run_on(current, day[1], "5000.25"), run_on(current, day[2], "6000.75")]
    # The quarter before: day 8 and day 12 (too late for day 10); none two quarters back;
    # day 10 three quarters back.
    before = run_on(quarters[2], quarters[2][0] + dt.timedelta(days=7), "1500")
    run_on(quarters[2], quarters[2][0] + dt.timedelta(days=11), "9999")
    oldest = run_on(quarters[0], quarters[0][0] + dt.timedelta(days=9), "2500")
    _, key = create_api_key(conn, tenant, "browser test")

    page, _ = sign_in(browser, live_server, key, runs[-1])
    page.click("#coverage-table tbody tr >> nth=0")
    wait_for_deals(page, f"USER:{ada}:")
    page.wait_for_function("() => window.samePointChart && window.trendChart")

    # The trend: one point per day, on a linear axis of days, over the whole quarter.
    trend = drawn(page, "trendChart")
    assert trend["labels"] == [d.isoformat() for d in day]
    per_day = [runs[0], runs[2], runs[3]]
    assert trend["data"][0] == [
        {"x": epoch_day(d), "y": ratio(oracle_rows[r]["remaining_coverage_ratio"])}
        for d, r in zip(day, per_day, strict=True)
    ]
    assert [point["y"] for point in trend["data"][1]] == [
        float(oracle_rows[r]["attainment_ratio"]) * 100 for r in per_day
    ]
    assert trend["x"] == {
        "type": "linear",
        "min": epoch_day(start),
        "max": epoch_day(end - dt.timedelta(days=1)),
    }
    assert page.inner_text("#trend-title") == "Trend: Ada on 3 days of this period"

    # The same point: day 10 of this and the three quarters before.
    assert page.inner_text("#same-point-title") == (
        "Same point of the quarter: day 10 of the last 4 quarters"
    )
    same = drawn(page, "samePointChart")
    names = [f"{q[0].year}-Q{(q[0].month - 1) // 3 + 1}" for q in quarters]
    cutoffs = [q[0] + dt.timedelta(days=9) for q in quarters]
    assert [label.split(" · ")[0] for label in same["labels"]] == names
    expected = [oldest, None, before, runs[3]]
    assert same["data"][0] == [
        None if r is None else ratio(oracle_rows[r]["remaining_coverage_ratio"]) for r in expected
    ]
    cells = page.locator("#same-point-table tbody tr").all()
    # (text_content: the table sits in a closed <details>, so nothing is rendered yet)
    assert [line.locator("td").nth(1).text_content() for line in cells] == [
        c.isoformat() for c in cutoffs
    ]
    assert cells[1].locator("td").nth(2).text_content() == "no run"

    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.getElementById('trend-card').scrollIntoView({ block: 'start' })")
    shot = folder / "dashboard-trends.png"
    page.locator("#trend-card").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # Export CSV: the trend's table carries the exact decimals of the API.
    page.click("#trend-card details.trend-data >> nth=0")
    lines = download(page, "#trend-card [data-export=trend]")
    assert lines[0][0] == "Day (as of)"
    assert [(line[0], line[2]) for line in lines[1:]] == [
        (d.isoformat(), str(oracle_rows[r]["remaining_coverage_ratio"]))
        for d, r in zip(day, per_day, strict=True)
    ]
    page.click("#trend-card details.trend-data >> nth=1")
    lines = download(page, "#trend-card [data-export=same-point]")
    assert [line[2] for line in lines[1:]] == [
        cutoffs[0].isoformat(),
        "",
        before_day(quarters[2][0]),
        day[2].isoformat(),
    ]
    # The coverage table exports its run: the API's CSV, every row and metric.
    lines = download(page, "[data-export=coverage]")
    assert tuple(lines[0]) == CSV_COLUMNS
    [row] = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert (row["run_id"], row["principal_id"]) == (str(runs[-1]), str(ada))
    assert Decimal(row["open_amount"]) == oracle_rows[runs[-1]]["open_amount"]
    # The deals table exports what it lists, amounts exact.
    lines = download(page, "[data-export=deals]")
    assert lines[0][0] == "Deal"
    amounts = sorted(line[6] for line in lines[1:])
    assert amounts == ["250.00", "6000.75"]
    assert page.evaluate("() => window.cspViolations") == []


def before_day(quarter_start: dt.date) -> str:
    return (quarter_start + dt.timedelta(days=7)).isoformat()
