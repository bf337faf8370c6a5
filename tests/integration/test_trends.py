"""Trends over time: a principal's history with one point per day (the day's last
run) and the same point of several quarters — each checked against what the test
itself recorded of the runs it made (their day, their order, and the oracle's
numbers at the time)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import ValidationError, coverage_request, principal_history, run_coverage
from pipeline_coverage.cli import main
from pipeline_coverage.history import same_point_of_quarter
from pipeline_coverage.reports.snapshot import take_snapshots
from pipeline_coverage.tenants import set_run_defaults
from tests.factory import Crm
from tests.oracle import Options, Oracle
from tests.worlds import Q1, World

#: The tenant's fiscal year starts in February: FY2027-Q1 is February to April 2026.
FY27_Q1 = (dt.date(2026, 2, 1), dt.date(2026, 5, 1))


@dataclass(frozen=True)
class Shop:
    tenant: uuid.UUID
    rep: uuid.UUID
    sales: uuid.UUID
    #: One open deal of the rep closing in each quarter, by the quarter's first day.
    deals: dict[dt.date, uuid.UUID]


QUARTER_STARTS = [dt.date(y, m, 1) for y, m in ((2025, 11), (2026, 2), (2026, 5), (2026, 8),
                                                  (2026, 11), (2027, 2))]  # fmt: skip


def shop(conn: psycopg.Connection[Any]) -> Shop:
    crm = Crm(conn)
    tenant = crm.tenant("Trendy")
    conn.execute("UPDATE dyno_crm.tenant SET fiscal_year_start_month = 2 WHERE id = %s", (tenant,))
    conn.commit()
    rep = crm.user(tenant, "Tess")
    sales = crm.pipeline(tenant, "Sales")
    stage = crm.stage(tenant, sales, "IN_PROGRESS")
    deals = {
        start: crm.deal(tenant, sales, stage, "100", start + dt.timedelta(days=20), owner=rep)
        for start in QUARTER_STARTS
    }
    ends = [*QUARTER_STARTS[1:], dt.date(2027, 5, 1)]
    for start, end in zip(QUARTER_STARTS, ends, strict=True):
        crm.target(tenant, "USER", rep, start, end, "1000")
    return Shop(tenant, rep, sales, deals)


def set_amount(conn: psycopg.Connection[Any], deal: uuid.UUID, amount: str) -> None:
    conn.execute("UPDATE dyno_crm.deal SET amount = %s WHERE id = %s", (Decimal(amount), deal))
    conn.commit()


@dataclass(frozen=True)
class Made:
    """A run the test made: its id, its day, and the rep's numbers the oracle expects."""

    run_id: uuid.UUID
    day: dt.date
    open_amount: Decimal
    target_amount: Decimal | None
    coverage_ratio: Decimal | None


def expected_row(conn: psycopg.Connection[Any], s: Shop, period: tuple[dt.date, dt.date],
                 day: dt.date) -> dict[str, Any]:  # fmt: skip
    return Oracle(conn, s.tenant).row(Options(*period, as_of=day), "USER", s.rep, None)


def make_run(conn: psycopg.Connection[Any], s: Shop, day: dt.date, **options: Any) -> Made:
    request = coverage_request(s.tenant, *FY27_Q1, as_of=day, **options)
    run_id = run_coverage(conn, request).run_id
    row = expected_row(conn, s, FY27_Q1, day)
    return Made(run_id, day, row["open_amount"], row["target_amount"], row["coverage_ratio"])


def numbers(point: Any) -> tuple[Any, ...]:
    return point.run_id, point.as_of, point.open_amount, point.target_amount, point.coverage_ratio


def made_numbers(made: Made) -> tuple[Any, ...]:
    return made.run_id, made.day, made.open_amount, made.target_amount, made.coverage_ratio


def test_one_point_per_day_is_the_days_last_run(conn: psycopg.Connection[Any]) -> None:
    s = shop(conn)
    deal = s.deals[FY27_Q1[0]]
    days = [(2, 3), (2, 3), (2, 3), (2, 5), (2, 4), (2, 5), (2, 9)]
    made = []
    for n, (month, day) in enumerate(days):
        set_amount(conn, deal, f"{100 + 10 * n}.50")
        # Single and batch runs alike: a principal's row is the same in both.
        principal = {"principal_type": "USER", "principal_id": s.rep} if n % 2 else {}
        made.append(make_run(conn, s, dt.date(2026, month, day), **principal))
    # Not in this history: another target_match (when asked to leave it out), another
    # period, one pipeline's run.
    set_amount(conn, deal, "999")
    within = make_run(conn, s, dt.date(2026, 2, 9), target_match="within")
    run_coverage(conn, coverage_request(s.tenant, dt.date(2026, 5, 1), dt.date(2026, 8, 1),
                                        as_of=dt.date(2026, 2, 10)))  # fmt: skip
    run_coverage(conn, coverage_request(s.tenant, *FY27_Q1, pipeline_id=s.sales,
                                        as_of=dt.date(2026, 2, 10)))  # fmt: skip
    # A run stored before runs recorded as_of: its day is the UTC day it was generated.
    set_amount(conn, deal, "55")
    legacy = make_run(conn, s, dt.date(2026, 2, 1))
    conn.execute(
        "UPDATE dyno_crm.report_run SET parameters = parameters - 'as_of',"
        " generated_at = '2026-02-07 23:30:00+00' WHERE id = %s",
        (legacy.run_id,),
    )
    conn.commit()
    legacy = Made(legacy.run_id, dt.date(2026, 2, 7), legacy.open_amount,
                  legacy.target_amount, legacy.coverage_ratio)  # fmt: skip

    # Independently: per day, the last run made for it; days in order.
    last_of_day: dict[dt.date, Made] = {}
    for one in [*made, legacy]:
        last_of_day[one.day] = one
    per_day = [last_of_day[day] for day in sorted(last_of_day)]
    found = principal_history(conn, s.tenant, "USER", s.rep, *FY27_Q1, granularity="day",
                              target_match="exact")  # fmt: skip
    assert [numbers(p) for p in found] == [made_numbers(m) for m in per_day]
    assert [p.as_of for p in found] == [dt.date(2026, 2, d) for d in (3, 4, 5, 7, 9)]

    # The tenant's default target matching (exact) is the filter unless told.
    assert principal_history(conn, s.tenant, "USER", s.rep, *FY27_Q1, granularity="day") == found
    # With any target matching, the within run is the 9th's last.
    everything = principal_history(conn, s.tenant, "USER", s.rep, *FY27_Q1, granularity="day",
                                   target_match="any")  # fmt: skip
    assert [numbers(p) for p in everything] == [made_numbers(m) for m in [*per_day[:-1], within]]
    # Every run, oldest generated first (the legacy run's stamp is February's).
    every_run = principal_history(conn, s.tenant, "USER", s.rep, *FY27_Q1, target_match="any")
    assert [p.run_id for p in every_run] == [legacy.run_id] + [m.run_id for m in made] + [
        within.run_id
    ]
    # The pipeline's history is the pipeline run only.
    by_sales = principal_history(conn, s.tenant, "USER", s.rep, *FY27_Q1, s.sales,
                                 granularity="day")  # fmt: skip
    assert [p.as_of for p in by_sales] == [dt.date(2026, 2, 10)]


def test_history_refuses_an_unknown_granularity(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValidationError, match="granularity: must be one of run, day"):
        principal_history(conn, uuid.uuid4(), "USER", uuid.uuid4(), *FY27_Q1, granularity="week")


@dataclass(frozen=True)
class Taken:
    """A snapshot the test took: its day, the period's start, the run, the rep's open."""

    day: dt.date
    start: dt.date
    run_id: uuid.UUID
    open_amount: Decimal


def take(conn: psycopg.Connection[Any], s: Shop, day: dt.date, amount: str) -> list[Taken]:
    for deal in s.deals.values():
        set_amount(conn, deal, amount)
    taken = []
    for one in take_snapshots(conn, [s.tenant], as_of=day):
        assert one.run_id is not None
        if one.replayed:
            continue  # the day's run again: nothing new to expect
        row = expected_row(conn, s, (one.period_start, one.period_end), day)
        taken.append(Taken(day, one.period_start, one.run_id, row["open_amount"]))
    return taken


def test_the_same_point_of_each_quarter(conn: psycopg.Connection[Any]) -> None:
    s = shop(conn)
    taken: list[Taken] = []
    for n, day in enumerate(
        [
            dt.date(2026, 3, 10),
            dt.date(2026, 3, 16),  # FY2027-Q1's day 44: exactly its cut-off
            dt.date(2026, 3, 20),  # after it; its next-quarter run is Q2's latest by day 44
            dt.date(2026, 6, 14),  # Q2's day 45: too late for Q2; a next-quarter run for Q3
            dt.date(2026, 12, 1),
            dt.date(2026, 12, 14),
            dt.date(2026, 12, 14),  # the same day again: replayed, nothing new
            dt.date(2026, 12, 15),  # after the reference day
        ]
    ):
        taken += take(conn, s, day, f"{200 + n}.25")
    found = same_point_of_quarter(conn, s.tenant, "USER", s.rep, quarters=5,
                                  as_of=dt.date(2026, 12, 14))  # fmt: skip
    # FY2027-Q4 (November 2026) holds December 14th: day 44.
    assert (found.as_of, found.day_of_quarter) == (dt.date(2026, 12, 14), 44)
    quarters = [
        ("FY2026-Q4", dt.date(2025, 11, 1), dt.date(2026, 2, 1), dt.date(2025, 12, 14)),
        ("FY2027-Q1", dt.date(2026, 2, 1), dt.date(2026, 5, 1), dt.date(2026, 3, 16)),
        ("FY2027-Q2", dt.date(2026, 5, 1), dt.date(2026, 8, 1), dt.date(2026, 6, 13)),
        ("FY2027-Q3", dt.date(2026, 8, 1), dt.date(2026, 11, 1), dt.date(2026, 9, 13)),
        ("FY2027-Q4", dt.date(2026, 11, 1), dt.date(2027, 2, 1), dt.date(2026, 12, 14)),
    ]
    assert [(q.period, q.period_start, q.period_end, q.day) for q in found.quarters] == quarters
    for quarter, (_, start, _, cutoff) in zip(found.quarters, quarters, strict=True):
        candidates = [t for t in taken if t.start == start and t.day <= cutoff]
        if not candidates:
            assert quarter.point is None
            continue
        latest = max(candidates, key=lambda t: (t.day, taken.index(t)))
        assert quarter.point is not None
        assert (quarter.point.run_id, quarter.point.as_of, quarter.point.open_amount) == (
            latest.run_id,
            latest.day,
            latest.open_amount,
        )
        assert quarter.point.target_amount == Decimal("1000.00")
    # The points the definition picks, spelled out: none for FY2026-Q4, then the 16th
    # of March, the 20th of March's next-quarter run, the 14th of June's, the 14th of December.
    assert [q.point.as_of if q.point else None for q in found.quarters] == [
        None, dt.date(2026, 3, 16), dt.date(2026, 3, 20), dt.date(2026, 6, 14),
        dt.date(2026, 12, 14),
    ]  # fmt: skip


def test_a_day_past_a_short_quarters_end_is_its_last_day(conn: psycopg.Connection[Any]) -> None:
    s = shop(conn)
    found = same_point_of_quarter(conn, s.tenant, "USER", s.rep, quarters=4,
                                  as_of=dt.date(2026, 12, 14), day_of_quarter=92)  # fmt: skip
    assert found.day_of_quarter == 92
    # February to April has 89 days; the other three 92.
    assert [q.day for q in found.quarters] == [
        dt.date(2026, 4, 30), dt.date(2026, 7, 31), dt.date(2026, 10, 31), dt.date(2027, 1, 31)
    ]  # fmt: skip
    assert all(q.point is None for q in found.quarters)


def test_same_point_validates_before_reading(conn: psycopg.Connection[Any]) -> None:
    s = shop(conn)
    with pytest.raises(ValidationError, match="quarters: must be 1 to 40"):
        same_point_of_quarter(conn, s.tenant, "USER", s.rep, quarters=0)
    with pytest.raises(ValidationError, match="day_of_quarter: must be 1 to 92"):
        same_point_of_quarter(conn, s.tenant, "USER", s.rep, day_of_quarter=93)
    with pytest.raises(ValidationError, match="as_of: out of range"):
        same_point_of_quarter(conn, s.tenant, "USER", s.rep, as_of=dt.date(1, 2, 1), quarters=2)


# --- over HTTP -------------------------------------------------------------------------


def run_as_of(conn: psycopg.Connection[Any], world: World, day: dt.date) -> uuid.UUID:
    request = coverage_request(world.tenant, dt.date(2026, 1, 1), dt.date(2026, 4, 1), as_of=day)
    return run_coverage(conn, request).run_id


def test_daily_history_and_same_point_over_http(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    first = run_as_of(conn, world, dt.date(2026, 1, 14))
    second = run_as_of(conn, world, dt.date(2026, 1, 14))
    third = run_as_of(conn, world, dt.date(2026, 1, 20))
    params = {"principal_type": "USER", "principal_id": str(world.ann),
              "period_start": "2026-01-01", "period_end": "2026-04-01"}  # fmt: skip
    every = api.get("/v1/coverage/history", params=params, headers=world.auth).json()
    assert every["granularity"] == "run"
    assert [p["run_id"] for p in every["points"]] == [str(r) for r in (first, second, third)]
    daily = api.get(
        "/v1/coverage/history", params={**params, "granularity": "day"}, headers=world.auth
    ).json()
    assert daily["granularity"] == "day"
    assert [(p["run_id"], p["as_of"]) for p in daily["points"]] == [
        (str(second), "2026-01-14"),
        (str(third), "2026-01-20"),
    ]
    expected = Oracle(conn, world.tenant).row(
        Options(dt.date(2026, 1, 1), dt.date(2026, 4, 1), as_of=dt.date(2026, 1, 20)),
        "USER", world.ann, None,
    )  # fmt: skip
    assert Decimal(daily["points"][1]["open_amount"]) == expected["open_amount"]
    assert daily["points"][1]["coverage_ratio"] == str(expected["coverage_ratio"])

    same = {"principal_type": "USER", "principal_id": str(world.ann), "quarters": "2",
            "as_of": "2026-04-19"}  # fmt: skip
    body = api.get("/v1/coverage/same-point", params=same, headers=world.auth).json()
    assert (body["as_of"], body["day_of_quarter"]) == ("2026-04-19", 19)
    assert [(q["period"], q["day"]) for q in body["quarters"]] == [
        ("2026-Q1", "2026-01-19"),  # a January calendar: quarters by their calendar name
        ("2026-Q2", "2026-04-19"),
    ]
    assert body["quarters"][0]["point"]["run_id"] == str(second)
    assert body["quarters"][1]["point"] is None
    # Another tenant's key sees nothing of this tenant's runs.
    theirs = api.get("/v1/coverage/same-point", params=same, headers=other.auth).json()
    assert [q["point"] for q in theirs["quarters"]] == [None, None]
    theirs = api.get("/v1/coverage/history", params=params, headers=other.auth).json()
    assert theirs["points"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"quarters": "0"}, "quarters"),
        ({"quarters": "41"}, "quarters"),
        ({"day": "93"}, "day"),
        ({"as_of": "2026-02-30"}, "as_of"),
        ({"as_of": "0001-01-01", "quarters": "3"}, "as_of"),
    ],
)
def test_bad_trend_queries_are_422_naming_the_field(
    api: httpx.Client, world: World, query: dict[str, str], field: str
) -> None:
    principal = {"principal_type": "USER", "principal_id": str(world.ann)}
    if "granularity" in query:
        path = "/v1/coverage/history"
        principal |= {"period_start": "2026-01-01", "period_end": "2026-04-01"}
    else:
        path = "/v1/coverage/same-point"
    response = api.get(path, params={**principal, **query}, headers=world.auth)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {error["field"] for error in response.json()["errors"]}


# --- the commands ----------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_history_and_same_point_commands(
    conn: psycopg.Connection[Any],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = shop(conn)
    deal = s.deals[FY27_Q1[0]]
    made = []
    for amount, day in (("300", 3), ("400", 3), ("500", 8)):
        set_amount(conn, deal, amount)
        made.append(make_run(conn, s, dt.date(2026, 2, day)))
    period = ("--period", "FY2027-Q1")
    code, out, err = cli(capsys, db_url, "history", "--tenant", "Trendy", "--principal", "Tess",
                         *period, "--format", "json")  # fmt: skip
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert (document["period_start"], document["granularity"]) == ("2026-02-01", "day")
    assert [(p["run_id"], p["as_of"], p["open_amount"]) for p in document["points"]] == [
        (str(m.run_id), m.day.isoformat(), str(m.open_amount)) for m in (made[1], made[2])
    ]
    code, out, _ = cli(capsys, db_url, "history", "--tenant", "Trendy", "--principal-type",
                       "user", "--principal-id", str(s.rep), *period, "--by", "run",
                       "--format", "csv")  # fmt: skip
    lines = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [line["run_id"] for line in lines] == [str(m.run_id) for m in made]
    assert [Decimal(line["coverage_ratio"]) for line in lines] == [m.coverage_ratio for m in made]
    code, out, _ = cli(capsys, db_url, "history", "--tenant", "Trendy", "--principal", "Tess",
                       *period)  # fmt: skip
    assert code == 0
    assert "each day's last run (2)" in out
    assert "2026-02-08" in out
    assert "2026-02-03" in out

    code, out, _ = cli(capsys, db_url, "same-point", "--tenant", "Trendy", "--principal", "Tess",
                       "--as-of", "2026-05-09", "--quarters", "2", "--format", "json")  # fmt: skip
    assert code == 0
    document = json.loads(out)
    assert document["day_of_quarter"] == 9
    assert [(q["period"], q["day"]) for q in document["quarters"]] == [
        ("FY2027-Q1", "2026-02-09"),
        ("FY2027-Q2", "2026-05-09"),
    ]
    assert document["quarters"][0]["point"]["run_id"] == str(made[2].run_id)
    assert document["quarters"][1]["point"] is None
    code, out, _ = cli(capsys, db_url, "same-point", "--tenant", "Trendy", "--principal", "Tess",
                       "--as-of", "2026-05-09", "--quarters", "2", "--day", "5")  # fmt: skip
    assert code == 0
    assert "day 5 of 2 quarters" in out
    assert "2026-02-03" in out  # the 3rd's last run is the latest as of day 5
    assert "no run" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("history", "--tenant", "Trendy"), "give --principal NAME"),
        (("history", "--tenant", "Trendy", "--principal-id", str(uuid.uuid4())),
         "--principal-id goes with --principal-type"),
        (("history", "--tenant", "Trendy", "--principal", "Tess", "--period", "FY2027-Q1",
          "--period-start", "2026-02-01"), "not both"),
        (("same-point", "--tenant", "Trendy", "--principal", "Nobody"), "no rep or team named"),
        (("same-point", "--tenant", "Trendy", "--principal", "Tess", "--day", "93"), "--day"),
        # an id the tenant does not have, and no stored run has: not an empty answer
        (("history", "--tenant", "Trendy", "--principal-type", "user", "--principal-id",
          str(uuid.UUID(int=0))), "principal_id: no user 00000000-"),
        (("same-point", "--tenant", "Trendy", "--principal-type", "group", "--principal-id",
          str(uuid.UUID(int=0))), "principal_id: no group 00000000-"),
        (("history", "--tenant", "Trendy", "--principal", "Tess", "--pipeline",
          str(uuid.UUID(int=0))), "pipeline: no pipeline 00000000-"),
        # an empty name would match every name
        (("history", "--tenant", " ", "--principal", "Tess"), "tenant: empty"),
        (("same-point", "--tenant", "Trendy", "--principal", ""), "principal: empty"),
    ],
)  # fmt: skip
def test_the_trend_commands_refuse_bad_input_on_one_line(
    conn: psycopg.Connection[Any],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    shop(conn)
    code, out, err = cli(capsys, db_url, *args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("pipeline-coverage: error:")
    assert message in err


def test_rolled_up_runs_are_a_series_of_their_own(
    conn: psycopg.Connection[Any], api: httpx.Client, world: World
) -> None:
    plain = run_as_of(conn, world, dt.date(2026, 1, 14))
    rolled = run_as_of(conn, world, dt.date(2026, 1, 14))
    # A run made with roll-up (its parameters say so; the numbers do not matter here).
    conn.execute(
        "UPDATE dyno_crm.report_run SET parameters = jsonb_set(parameters, '{rollup}', 'true')"
        " WHERE id = %s",
        (rolled,),
    )
    conn.commit()
    history = {"principal_type": "GROUP", "principal_id": str(world.team),
               "period_start": "2026-01-01", "period_end": "2026-04-01",
               "granularity": "day"}  # fmt: skip
    same = {"principal_type": "GROUP", "principal_id": str(world.team), "quarters": "1",
            "as_of": "2026-02-01"}  # fmt: skip
    # Unless told, the runs of the tenant's default (no roll-up); "any": the day's last.
    for rollup, expected in (("false", plain), ("true", rolled), (None, plain), ("any", rolled)):
        query = {} if rollup is None else {"rollup": rollup}
        points = api.get("/v1/coverage/history", params={**history, **query},
                         headers=world.auth).json()["points"]  # fmt: skip
        assert [p["run_id"] for p in points] == [str(expected)]
        quarters = api.get("/v1/coverage/same-point", params={**same, **query},
                           headers=world.auth).json()["quarters"]  # fmt: skip
        assert quarters[0]["point"]["run_id"] == str(expected)
    found = principal_history(conn, world.tenant, "GROUP", world.team, *Q1, rollup=False)
    assert [p.run_id for p in found] == [plain]


def test_a_teams_trend_commands_name_it_and_read_the_tenants_default_rollup(
    conn: psycopg.Connection[Any],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    world: World,
) -> None:
    """A team's history and same point, on a tenant that rolls up by default: only the
    rolled-up runs, and the titles name the team rather than print its type and id."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    set_run_defaults(conn, world.tenant, rollup=True)
    day = dt.date(2026, 1, 14)
    made = {
        rollup: run_coverage(
            conn, coverage_request(world.tenant, *Q1, as_of=day, rollup=rollup)
        ).run_id
        for rollup in (True, False)  # the plain run is the day's last
    }
    team = f"{world.name} Team"
    period = ("--period-start", "2026-01-01", "--period-end", "2026-04-01")
    code, out, err = cli(capsys, db_url, "history", "--tenant", world.name, "--principal", team,
                         *period, "--format", "json")  # fmt: skip
    assert (code, err) == (0, "")
    assert [p["run_id"] for p in json.loads(out)["points"]] == [str(made[True])]
    code, out, _ = cli(capsys, db_url, "history", "--tenant", world.name, "--principal", team,
                       *period, "--no-rollup", "--format", "json")  # fmt: skip
    assert [p["run_id"] for p in json.loads(out)["points"]] == [str(made[False])]
    code, out, _ = cli(capsys, db_url, "history", "--tenant", world.name, "--principal-type",
                       "group", "--principal-id", str(world.team), *period)  # fmt: skip
    assert code == 0
    title = out.splitlines()[0]
    assert f"History · {team} (team) · 2026-01-01 to 2026-04-01" in title
    assert str(world.team) not in out
    code, out, _ = cli(capsys, db_url, "same-point", "--tenant", world.name, "--principal",
                       f"{world.name} Ann", "--as-of", "2026-01-20", "--quarters", "1")  # fmt: skip
    assert code == 0
    assert f"Same point of the quarter · {world.name} Ann (rep) · day 20" in out.splitlines()[0]
    assert str(world.ann) not in out
