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
import itertools
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


def test_the_trend_of_a_past_quarter_spans_it_and_shows_quota_met(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A quarter that is over: runs as of its days 10 (short of the target), 20 and 40
    (quota met), and one made today (as the old Run now did). Run now makes a run as of
    the quarter's last day; the trend's axis is the quarter, not up to today (today's
    run is in the Data table only); the coverage line breaks on the days of quota met,
    which are marked; attainment and coverage look the same in both charts."""
    crm = Crm(conn)
    tenant = crm.tenant("Past Quarter")
    ada = crm.user(tenant, "Ada")
    pipeline = crm.pipeline(tenant)
    open_stage = crm.stage(tenant, pipeline)
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    this_quarter = quarter_of(dt.date.today())
    start, end = add_months(this_quarter[0], -3), this_quarter[0]
    last = end - dt.timedelta(days=1)
    big = crm.deal(tenant, pipeline, open_stage, "1500", last, owner=ada)
    crm.target(tenant, "USER", ada, start, end, "1000")
    days = [start + dt.timedelta(days=n) for n in (9, 19, 39)]
    run_coverage(conn, coverage_request(tenant, start, end, as_of=days[0]))
    conn.execute("UPDATE dyno_crm.deal SET stage_id = %s, close_date = %s WHERE id = %s",
                 (won_stage, days[1], big))  # fmt: skip
    crm.deal(tenant, pipeline, open_stage, "300", last, owner=ada)
    conn.commit()
    for day in days[1:]:
        run_coverage(conn, coverage_request(tenant, start, end, as_of=day))
    today = run_coverage(conn, coverage_request(tenant, start, end)).run_id
    _, key = create_api_key(conn, tenant, "browser test")

    page, _ = sign_in(browser, live_server, key, today)
    page.click("#run-now")
    page.wait_for_function(
        "id => { const s = document.getElementById('run-status').dataset.runId;"
        " return s && s !== id; }",
        arg=str(today),
    )
    assert f"as of {last.isoformat()}" in page.inner_text("#run-status")
    page.click("#coverage-table tbody tr >> nth=0")
    wait_for_deals(page, f"USER:{ada}:")
    page.wait_for_function("() => window.samePointChart && window.trendChart")

    trend = drawn(page, "trendChart")
    assert trend["x"] == {"type": "linear", "min": epoch_day(start), "max": epoch_day(last)}
    inside = [*days, last]
    assert trend["labels"] == [d.isoformat() for d in inside]
    assert page.inner_text("#trend-title") == (
        "Trend: Ada on 4 days of this period (1 more as of days outside it: see Data)"
    )
    # Coverage: 1.50x on day 10, then quota met (no point, the line breaks), marked.
    assert [p["y"] for p in trend["data"][0]] == [1.5, None, None, None]
    looks = page.evaluate(
        "() => [window.trendChart, window.samePointChart].map(c => c.data.datasets.map(d =>"
        " ({ label: d.label, spanGaps: d.spanGaps ?? null, border: d.borderColor,"
        " points: d.pointBackgroundColor ?? d.backgroundColor, style: d.pointStyle ?? null })))"
    )
    coverage, attainment, met = looks[0]
    assert coverage["spanGaps"] is False
    assert met["label"] == "Quota met"
    assert [p["x"] for p in trend["data"][2]] == [epoch_day(d) for d in inside[1:]]
    same_coverage, same_attainment = looks[1]
    # One look per metric: attainment ink diamonds in both; coverage by band in both
    # (a point or a bar: 1.50x amber, quota met green like its star), one legend swatch.
    assert (attainment["border"], attainment["style"]) == (
        same_attainment["border"],
        same_attainment["style"],
    )
    assert attainment["border"] != coverage["border"]
    assert coverage["points"][0] == "#e0a100"  # 1.50x: watch, as the coverage chart
    assert coverage["points"][1] == met["border"] == same_coverage["points"][-1]
    swatches = page.evaluate(
        "() => [window.trendChart, window.samePointChart].map(c =>"
        " Object.fromEntries(c.legend.legendItems.map(i => [i.text, i.fillStyle])))"
    )
    shared = set(swatches[0]) & set(swatches[1])
    assert shared == {coverage["label"], attainment["label"]}
    assert all(swatches[0][label] == swatches[1][label] for label in shared)
    assert swatches[0][coverage["label"]] != swatches[0][attainment["label"]]
    # The Data table has every day, today's run as well.
    rows = page.locator("#trend-table tbody tr").all()
    assert [r.locator("td").first.text_content() for r in rows][-1] == dt.date.today().isoformat()

    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.getElementById('trend-card').scrollIntoView({ block: 'start' })")
    shot = folder / "dashboard-trend-past-quarter.png"
    page.locator("#trend-card").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_bar_texts_never_overlap_nor_are_cut_off(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """45 reps at 0.00x after one far above the rest, and 30 teams of quota met: too
    many bars for every text. Texts that would run into the one before are left out,
    none overlaps another, and the tallest bar's is inside the canvas."""
    crm = Crm(conn)
    tenant = crm.tenant("Crowded")
    pipeline = crm.pipeline(tenant)
    open_stage = crm.stage(tenant, pipeline)
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    start, end = quarter_of(dt.date.today())
    late = end - dt.timedelta(days=1)
    star = crm.user(tenant, "Star")
    crm.deal(tenant, pipeline, open_stage, "50000", late, owner=star)
    crm.target(tenant, "USER", star, start, end, "1000")
    for n in range(45):
        crm.target(tenant, "USER", crm.user(tenant, f"Rep {n:02}"), start, end, "1000")
    for n in range(30):
        team = crm.group(tenant, f"Team {n:02}")
        crm.deal(tenant, pipeline, won_stage, "100", start, owner_group=team)
        crm.target(tenant, "GROUP", team, start, end, "100")
    conn.commit()
    run_id = run_coverage(conn, coverage_request(tenant, start, end)).run_id
    _, key = create_api_key(conn, tenant, "browser test")
    page, _ = sign_in(browser, live_server, key, run_id)
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for tab, texts, first in (("USER", "0.00x", "50.00x"), ("GROUP", "quota met", "quota met")):
        page.click(f"#tab-{tab}")
        page.wait_for_function("() => window.coverageChart && window.coverageChart.$barTexts")
        written = page.evaluate("() => window.coverageChart.$barTexts")
        bars = page.evaluate("() => window.coverageChart.data.labels.length")
        assert bars in (46, 30)
        assert written[0]["index"] == 0
        assert written[0]["text"] == first
        assert {w["text"] for w in written[1:]} == {texts}
        assert 1 < len(written) < bars  # thinned, not dropped
        for before, after in itertools.pairwise(written):
            assert after["left"] >= before["right"], (before, after)
        assert all(w["top"] >= 0 for w in written)
        if tab == "GROUP":
            page.locator("#coverage-chart").screenshot(
                path=str(folder / "dashboard-bar-labels.png")
            )
