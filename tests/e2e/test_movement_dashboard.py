"""What moved between two runs, in a real browser (Debian's Chromium, Playwright).

A tenant is run, its deals change (won, lost, slipped out of the quarter, shrank,
reassigned, new), and it is run again. The dashboard shows the latest run and, by
default, compares it with the run a week before: the waterfall's bars and the steps
table must equal the independent waterfall (tests/movement_oracle.py), a click on a
bar lists that step's deals (their total is the step, to the cent), and a table
exports as CSV. With ``PIPELINE_COVERAGE_SCREENSHOTS=docs/images`` it writes
``dashboard-movement.png`` for the docs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.periods import quarter_of
from tests.e2e.test_dashboard import (
    SCREENSHOTS,
    assert_csp_held,
    browser,
    click_bar,
    sign_in,
)
from tests.factory import Crm
from tests.movement_oracle import STEPS, waterfall
from tests.oracle import Options, Oracle

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the fixture, shared with the dashboard's tests


def backdate(conn: psycopg.Connection[Any], run: uuid.UUID, days: int) -> None:
    """Make a run look ``days`` older (snapshots are a week apart; the test is not)."""
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - make_interval(days => %s)"
        " WHERE id = %s",
        (days, run),
    )
    conn.commit()


def test_the_waterfall_between_two_runs_and_its_deals(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Acme Movement")
    start, end = quarter_of(dt.date.today())
    late = end - dt.timedelta(days=1)
    ann, bob = crm.user(tenant, "Ann"), crm.user(tenant, "Bob")
    team = crm.group(tenant, "East")
    pipeline = crm.pipeline(tenant, "New business")
    stage = {state: crm.stage(tenant, pipeline, state) for state in
             ("IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED")}  # fmt: skip

    def deal(amount: str, owner: uuid.UUID = ann) -> uuid.UUID:
        return crm.deal(tenant, pipeline, stage["IN_PROGRESS"], amount, late, owner=owner,
                        owner_group=team)  # fmt: skip

    won, lost, slipped = deal("9000.00"), deal("4000.10"), deal("6000.00")
    shrank, handed, steady = deal("5000.00"), deal("2500.00"), deal("7000.00")
    deal("3000.00", owner=bob)
    crm.target(tenant, "USER", ann, start, end, "10000.00")
    crm.target(tenant, "USER", bob, start, end, "5000.00")
    as_of = dt.date.today()
    options = Options(start, end, as_of=as_of)
    before = Oracle(conn, tenant)
    week_ago = run_pipeline_coverage_batch(conn, tenant, start, end, as_of=as_of)
    backdate(conn, week_ago, 8)
    two_days_ago = run_pipeline_coverage_batch(conn, tenant, start, end, as_of=as_of)
    backdate(conn, two_days_ago, 2)

    def update(deal_id: uuid.UUID, assignments: str, *values: Any) -> None:
        conn.execute(
            f"UPDATE dyno_crm.deal SET {assignments} WHERE tenant_id = %s AND id = %s",  # noqa: S608
            (*values, tenant, deal_id),
        )

    update(won, "stage_id = %s, close_date = %s", stage["DONE_SUCCESS"], start)
    update(lost, "stage_id = %s, close_date = %s", stage["DONE_FAILED"], start)
    update(slipped, "expected_close_date = %s", end + dt.timedelta(days=20))
    update(shrank, "amount = 3200")
    update(handed, "owned_by_user_id = %s", bob)
    conn.commit()
    new = deal("1500.00")
    after = Oracle(conn, tenant)
    today = run_pipeline_coverage_batch(conn, tenant, start, end, as_of=as_of)
    expected = waterfall(before, after, options, options)[("USER", ann, None)]
    _, key = create_api_key(conn, tenant, "browser test")

    page, loaded = sign_in(browser, live_server, key, today)
    # Run B is the run on screen; run A the one a week before (not two days before).
    page.wait_for_function(
        "ids => document.getElementById('movement-card').dataset.loaded === ids",
        arg=f"{week_ago}:{today}",
    )
    assert page.input_value("#movement-from") == str(week_ago)
    assert page.input_value("#movement-to") == str(today)
    # Clicking Ann's row in the table picks her in the waterfall too.
    page.click("#coverage-table tbody tr:has-text('Ann')")
    page.wait_for_function("() => document.getElementById('movement-who').value.includes(':')")
    assert page.input_value("#movement-who") == f"USER:{ann}:"
    # Her coverage of the remaining quota then and now (the run table's), named so.
    then, now = (
        oracle.row(options, "USER", ann, None)["remaining_coverage_ratio"]
        for oracle in (before, after)
    )
    summary = page.inner_text("#movement-summary")
    assert summary.startswith(f"Ann: coverage of remaining quota {then:,.2f}x → {now:,.2f}x"), (
        summary
    )
    assert f"{expected.start_amount:,.2f} USD → {expected.end_amount:,.2f} USD" in summary

    # The steps table: each step's effect on the open amount, and its deals.
    steps = {
        line.get_attribute("data-step"): line.locator("th, td").all_inner_texts()
        for line in page.locator("#movement-steps tbody tr").all()
    }
    assert steps["start"][-1] == f"{expected.start_amount:,.2f}"
    assert steps["end"][-1] == f"{expected.end_amount:,.2f}"
    for step in STEPS:
        effect = expected.amounts[step] * (-1 if step in ("won", "lost", "left") else 1)
        shown = f"{effect:+,.2f}" if effect else "0.00"
        assert steps[step][-1] == shown, step
        assert steps[step][2] == str(expected.counts[step]), step
    # The waterfall: from the start to the end in floating bars.
    bars = page.evaluate("() => window.movementChart.data.datasets[0].data")
    assert bars[0] == [0, float(expected.start_amount)]
    assert bars[-1] == [0, float(expected.end_amount)]
    assert bars[3][1] == pytest.approx(
        float(expected.start_amount - expected.amounts["won"] - expected.amounts["lost"]
              - expected.amounts["left"])
    )  # fmt: skip

    # A click on the "Left" bar lists the deals that left: slipped and handed over.
    labels = page.evaluate("() => window.movementChart.data.labels")
    click_bar(page, "movementChart", next(label for label in labels if label.startswith("Left")))
    page.wait_for_function(
        "() => { const box = document.getElementById('movement-deals-box');"
        " return !box.hidden && box.dataset.step === 'left' && box.dataset.loaded === 'true'; }"
    )
    rows = [line.locator("td").all_inner_texts() for line in
            page.locator("#movement-deals tbody tr").all()]  # fmt: skip
    want = {deal_id: d for deal_id, d in expected.deals.items() if d.step == "left"}
    assert len(rows) == len(want) == 2
    by_why = {row[1]: row for row in rows}
    assert set(by_why) == {"out of the run's scope (period, pipeline)", "reassigned"}
    slipped_row = by_why["out of the run's scope (period, pipeline)"]
    assert slipped_row[2] == f"{want[slipped].movement_amount:+,.2f}"
    assert (end + dt.timedelta(days=20)).isoformat() in slipped_row[5]  # where it is now
    assert by_why["reassigned"][5].endswith("Bob")
    total = page.inner_text("#movement-deals-total")
    assert "= the step" in total
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "dashboard-movement.png"
    page.locator("#movement-card").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # The changed step lists what shrank; the new deal entered.
    page.click("#movement-steps tbody tr[data-step='changed']")
    page.wait_for_function(
        "() => document.getElementById('movement-deals-box').dataset.step === 'changed'"
        " && document.getElementById('movement-deals-box').dataset.loaded === 'true'"
    )
    changed = page.locator("#movement-deals tbody tr td").all_inner_texts()
    assert changed[2] == f"{expected.deals[shrank].movement_amount:+,.2f}"
    assert steady not in expected.deals  # unchanged: not listed
    assert expected.deals[new].step == "entered"

    # Any table exports as CSV: this one, and the run's rows.
    with page.expect_download() as download:
        page.click("button.export-csv[data-export='movement-deals']")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][:3] == ["Deal", "Why", "Effect"]
    assert lines[1][2] == str(expected.deals[shrank].movement_amount)  # no separators
    with page.expect_download() as download:
        page.click("button.export-csv[data-export='coverage']")
    rows_csv = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    assert {line["principal_name"] for line in rows_csv} >= {"Ann", "Bob"}

    # The other run of the week can be picked as run A.
    page.select_option("#movement-from", str(two_days_ago))
    page.wait_for_function(
        "ids => document.getElementById('movement-card').dataset.loaded === ids",
        arg=f"{two_days_ago}:{today}",
    )
    assert_csp_held(page, loaded)


def test_the_waterfall_compares_with_the_run_a_week_earlier_by_as_of_on_the_run_tables_basis(
    browser: Any, live_server: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Runs back-filled in a minute, as of 14, 7 and 3 days ago and today: run A is the
    one as of a week before run B's day (not the oldest, nor the one generated a week
    earlier: none was). Ann had 900 of her 1,000 won and 1,516 open, 15.16x of the 100
    left; today the last 100 is won: the card says "coverage of remaining quota 15.16x
    → quota met", as her rows in the two runs' tables, for her and for the reps' total."""
    crm = Crm(conn)
    tenant = crm.tenant("Backfilled Movement")
    start, end = quarter_of(dt.date.today())
    today = dt.date.today()
    ann = crm.user(tenant, "Ann")
    pipeline = crm.pipeline(tenant, "New business")
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    crm.deal(tenant, pipeline, won_stage, "900.00", start, owner=ann)
    crm.deal(tenant, pipeline, open_stage, "1416.00", end - dt.timedelta(days=1), owner=ann)
    last = crm.deal(tenant, pipeline, open_stage, "100.00", end - dt.timedelta(days=1), owner=ann)
    crm.target(tenant, "USER", ann, start, end, "1000.00")
    days = [max(start, today - dt.timedelta(days=n)) for n in (14, 7, 3)]
    made = [run_pipeline_coverage_batch(conn, tenant, start, end, as_of=day) for day in days]
    conn.execute("UPDATE dyno_crm.deal SET stage_id = %s WHERE id = %s", (won_stage, last))
    conn.commit()
    latest = run_pipeline_coverage_batch(conn, tenant, start, end, as_of=today)
    _, key = create_api_key(conn, tenant, "browser test")

    page, _ = sign_in(browser, live_server, key, latest)
    week_before = made[1] if days[1] != days[0] else made[0]
    page.wait_for_function(
        "ids => document.getElementById('movement-card').dataset.loaded === ids",
        arg=f"{week_before}:{latest}",
    )
    summary = page.inner_text("#movement-summary")
    assert summary.startswith("All reps (total): coverage of remaining quota 15.16x → quota met")
    ends = page.evaluate(
        "() => [...document.querySelectorAll('#movement-summary [data-side]')]"
        ".map(el => [el.dataset.side, el.dataset.status, el.className])"
    )
    assert ends == [["start", "coverage", "pill healthy"], ["end", "quota_met", "pill met"]]
    page.click("#coverage-table tbody tr:has-text('Ann')")
    page.wait_for_function(
        "() => document.getElementById('movement-summary').textContent.startsWith('Ann:')"
    )
    assert page.inner_text("#movement-summary").startswith(
        "Ann: coverage of remaining quota 15.16x → quota met"
    )
    # Her row in the run on screen says the same.
    cell = page.inner_text(
        "#coverage-table tbody tr:has-text('Ann') td[data-metric=remaining_coverage_ratio]"
    )
    assert cell == "quota met"
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.locator("#movement-card").screenshot(path=str(folder / "dashboard-movement-basis.png"))
    assert (folder / "dashboard-movement-basis.png").stat().st_size > 10_000
