"""``GET /v1/periods``: the periods a tenant has targets or runs for, named in its
fiscal calendar, and the one the dashboard opens on (SPEC.md §10)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import psycopg

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.periods import fiscal_quarter_of
from tests.worlds import World


def periods(api: httpx.Client, world: World) -> dict[str, Any]:
    response = api.get("/v1/periods", headers=world.auth)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def spans(listed: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["period_start"], item["period_end"]) for item in listed]


def test_periods_list_targets_runs_and_the_current_quarter(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    # The world's targets: three rows for Q1 2026, one for Q2; no run yet.
    today = dt.date.today()
    current = fiscal_quarter_of(today, 1)
    found = periods(api, world)
    by_span = {(i["period_start"], i["period_end"]): i for i in found["items"]}
    q1, q2 = ("2026-01-01", "2026-04-01"), ("2026-04-01", "2026-07-01")
    assert set(by_span) == {q1, q2, (current[0].isoformat(), current[1].isoformat())}
    assert spans(found["items"]) == sorted(by_span, reverse=True)  # newest first
    assert (by_span[q1]["name"], by_span[q1]["targets"], by_span[q1]["runs"]) == ("2026-Q1", 3, 0)
    assert (by_span[q2]["targets"], by_span[q2]["current"]) == (1, False)
    # No run and no target this quarter: it opens on the latest quarter with targets.
    assert (found["default"]["period_start"], found["default"]["period_end"]) == q2

    # A run of Q1 (and one of the other tenant, which must not show): Q1 is the default.
    run_pipeline_coverage_batch(conn, world.tenant, dt.date(2026, 1, 1), dt.date(2026, 4, 1))
    run_pipeline_coverage_batch(conn, other.tenant, dt.date(2025, 1, 1), dt.date(2025, 4, 1))
    found = periods(api, world)
    by_span = {(i["period_start"], i["period_end"]): i for i in found["items"]}
    assert by_span[q1]["runs"] == 1
    assert by_span[q1]["last_run"] is not None
    assert ("2025-01-01", "2025-04-01") not in by_span
    assert (found["default"]["period_start"], found["default"]["period_end"]) == q1

    # The fiscal calendar names the periods: with a year starting in July, Q1 2026 is
    # the third quarter of FY2026.
    conn.execute(
        "UPDATE dyno_crm.tenant SET fiscal_year_start_month = 7 WHERE id = %s", (world.tenant,)
    )
    conn.commit()
    by_span = {(i["period_start"], i["period_end"]): i for i in periods(api, world)["items"]}
    assert by_span[q1]["name"] == "FY2026-Q3"
    current7 = fiscal_quarter_of(today, 7)
    assert by_span[(current7[0].isoformat(), current7[1].isoformat())]["current"] is True
