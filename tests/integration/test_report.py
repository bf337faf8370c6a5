"""The single-principal report against SPEC.md §1, on a real PostgreSQL.

Every expectation is either written out by hand for a small scenario or computed by
``tests.oracle`` (plain Python over the raw rows) — never by the report's own SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pipeline_coverage import (
    InputError,
    NotFoundError,
    ValidationError,
    get_run,
    run_pipeline_coverage_report,
)
from tests.factory import Crm, stored_runs
from tests.oracle import Oracle

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))


class World:
    """One tenant with a pipeline, open and done stages, two reps and a team."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.crm = crm = Crm(conn)
        self.tenant = crm.tenant("Acme")
        self.alice = crm.user(self.tenant, "Alice")
        self.bob = crm.user(self.tenant, "Bob")
        self.team = crm.group(self.tenant, "East")
        self.sales = crm.pipeline(self.tenant, "Sales")
        self.renewals = crm.pipeline(self.tenant, "Renewals")
        self.open = crm.stage(self.tenant, self.sales, "IN_PROGRESS")
        self.new = crm.stage(self.tenant, self.sales, "NOT_STARTED")
        self.won = crm.stage(self.tenant, self.sales, "DONE_SUCCESS")
        self.lost = crm.stage(self.tenant, self.sales, "DONE_FAILED")
        self.renewal_open = crm.stage(self.tenant, self.renewals, "IN_PROGRESS")

    def deal(self, amount: str | None, **kwargs: Any) -> uuid.UUID:
        kwargs.setdefault("expected", dt.date(2026, 2, 1))
        pipeline = kwargs.pop("pipeline", self.sales)
        stage = kwargs.pop("stage", self.open if pipeline == self.sales else self.renewal_open)
        return self.crm.deal(self.tenant, pipeline, stage, amount, **kwargs)

    def target(
        self,
        principal_type: str,
        principal: uuid.UUID,
        amount: str,
        period: tuple[dt.date, dt.date] = Q1,
        pipeline: uuid.UUID | None = None,
    ) -> None:
        self.crm.target(
            self.tenant, principal_type, principal, period[0], period[1], amount, pipeline
        )


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> World:
    return World(conn)


def fact(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> tuple[Any, ...]:
    rows = conn.execute(
        "SELECT target_amount, open_amount, coverage_ratio, principal_type, principal_id,"
        " pipeline_id, period_start, period_end, tenant_id"
        " FROM dyno_crm.report_pipeline_coverage_fact WHERE run_id = %s",
        (run_id,),
    ).fetchall()
    conn.commit()
    assert len(rows) == 1, "a single-principal run has exactly one fact row"
    return tuple(rows[0])


def report(
    conn: Any,
    world: World,
    principal_type: str,
    principal: uuid.UUID,
    pipeline: uuid.UUID | None = None,
    period: tuple[dt.date, dt.date] = Q1,
) -> tuple[Decimal | None, Decimal, Decimal | None]:
    run_id = run_pipeline_coverage_report(
        conn, world.tenant, period[0], period[1], principal_type, principal, pipeline
    )
    target, open_amount, ratio, *_ = fact(conn, run_id)
    expected = Oracle(conn, world.tenant).coverage(
        period[0], period[1], principal_type, principal, pipeline
    )
    assert (target, open_amount, ratio) == (
        expected.target_amount,
        expected.open_amount,
        expected.coverage_ratio,
    ), "the report disagrees with the independent computation"
    return target, open_amount, ratio


def test_hand_computed_scenario(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal("1000.00", owner=world.alice)
    world.deal("250.50", owner=world.bob, assignee=world.alice)
    world.deal("99.99", owner=world.bob)
    world.target("USER", world.alice, "500.00")

    assert report(conn, world, "USER", world.alice) == (
        Decimal("500.00"),
        Decimal("1250.50"),
        Decimal("2.5010"),
    )
    assert report(conn, world, "USER", world.bob) == (None, Decimal("350.49"), None)


def test_run_header_and_fact_keep_the_seed_shape(
    conn: psycopg.Connection[Any], world: World
) -> None:
    run_id = run_pipeline_coverage_report(
        conn,
        str(world.tenant),
        "2026-01-01",
        "2026-04-01",
        "USER",
        str(world.alice),
        str(world.sales),
    )
    assert isinstance(run_id, uuid.UUID)
    header = conn.execute(
        "SELECT tenant_id, report_type, period_start, period_end, parameters, generated_at"
        " FROM dyno_crm.report_run WHERE id = %s",
        (run_id,),
    ).fetchone()
    assert header is not None
    assert header[:4] == (world.tenant, "PIPELINE_COVERAGE", *Q1)
    # The seed's parameters, and the run options SPEC.md §8 adds.
    assert header[4] == {
        "mode": "single",
        "principal_type": "USER",
        "principal_id": str(world.alice),
        "pipeline_id": str(world.sales),
        "period": None,
        "period_start": "2026-01-01",
        "period_end": "2026-04-01",
        "rollup": False,
        "target_match": "exact",
        "win_rate_lookback_days": 365,
        "as_of": dt.date.today().isoformat(),
        "currency": "USD",
        "rates": {},
        # SPEC.md §14: why its row has no hit probability (a pipeline's run)
        "calibration": {"reason": "calibrated on runs of every pipeline; not for one pipeline"},
    }
    assert header[5] is not None
    row = fact(conn, run_id)
    assert row[3:] == ("USER", world.alice, world.sales, *Q1, world.tenant)


def test_period_bounds_are_half_open(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal("1.00", owner=world.alice, expected=dt.date(2025, 12, 31))  # day before
    world.deal("10.00", owner=world.alice, expected=dt.date(2026, 1, 1))  # first day
    world.deal("100.00", owner=world.alice, expected=dt.date(2026, 3, 31))  # last day
    world.deal("1000.00", owner=world.alice, expected=dt.date(2026, 4, 1))  # period_end
    assert report(conn, world, "USER", world.alice)[1] == Decimal("110.00")


def test_expected_close_date_wins_over_close_date(
    conn: psycopg.Connection[Any], world: World
) -> None:
    # Expected date outside the period: the close date inside it does not matter.
    world.deal("1.00", owner=world.alice, expected=dt.date(2026, 5, 1), close=dt.date(2026, 2, 1))
    # No expected date: the close date decides.
    world.deal("10.00", owner=world.alice, expected=None, close=dt.date(2026, 2, 1))
    world.deal("100.00", owner=world.alice, expected=None, close=dt.date(2026, 6, 1))
    # Neither date: never counted.
    world.deal("1000.00", owner=world.alice, expected=None, close=None)
    assert report(conn, world, "USER", world.alice)[1] == Decimal("10.00")


def test_null_amount_counts_as_zero(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal(None, owner=world.alice)
    world.target("USER", world.alice, "100.00")
    assert report(conn, world, "USER", world.alice) == (
        Decimal("100.00"),
        Decimal("0.00"),
        Decimal("0.0000"),
    )


def test_no_deal_gives_zero_not_null(conn: psycopg.Connection[Any], world: World) -> None:
    assert report(conn, world, "USER", world.alice) == (None, Decimal("0"), None)


def test_owner_who_is_also_assignee_counts_once(
    conn: psycopg.Connection[Any], world: World
) -> None:
    world.deal("500.00", owner=world.alice, assignee=world.alice)
    world.deal("70.00", owner_group=world.team, assignee_group=world.team)
    assert report(conn, world, "USER", world.alice)[1] == Decimal("500.00")
    assert report(conn, world, "GROUP", world.team)[1] == Decimal("70.00")


def test_assignee_and_owner_each_get_the_deal(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal("300.00", owner=world.alice, assignee=world.bob)
    assert report(conn, world, "USER", world.alice)[1] == Decimal("300.00")
    assert report(conn, world, "USER", world.bob)[1] == Decimal("300.00")


def test_group_matches_owning_or_assigned_group_only(
    conn: psycopg.Connection[Any], world: World
) -> None:
    other = world.crm.group(world.tenant, "West")
    world.deal("1.00", owner_group=world.team)
    world.deal("10.00", owner_group=other, assignee_group=world.team)
    world.deal("100.00", owner=world.alice)  # a member's deal is not the group's
    world.crm.member(world.tenant, world.team, world.alice)
    assert report(conn, world, "GROUP", world.team)[1] == Decimal("11.00")


def test_done_stages_are_left_out(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal("1.00", owner=world.alice, stage=world.won)
    world.deal("10.00", owner=world.alice, stage=world.lost)
    world.deal("100.00", owner=world.alice, stage=world.new)
    world.deal("1000.00", owner=world.alice, stage=world.open)
    assert report(conn, world, "USER", world.alice)[1] == Decimal("1100.00")


def test_several_target_rows_are_summed(conn: psycopg.Connection[Any], world: World) -> None:
    world.target("USER", world.alice, "100.00")
    world.target("USER", world.alice, "50.00", pipeline=world.sales)
    world.target("USER", world.alice, "25.00", pipeline=world.renewals)
    # Other bounds, other principal types and other principals never count.
    world.target("USER", world.alice, "7000.00", period=(dt.date(2026, 1, 1), dt.date(2026, 2, 1)))
    world.target(
        "USER", world.alice, "8000.00", period=(dt.date(2025, 12, 31), dt.date(2026, 4, 1))
    )
    world.target("USER", world.bob, "9000.00")
    world.deal("350.00", owner=world.alice)
    assert report(conn, world, "USER", world.alice) == (
        Decimal("175.00"),
        Decimal("350.00"),
        Decimal("2.0000"),
    )


def test_pipeline_filter_restricts_deals_and_targets(
    conn: psycopg.Connection[Any], world: World
) -> None:
    world.target("USER", world.alice, "100.00")  # pipeline-less: not counted with a pipeline
    world.target("USER", world.alice, "40.00", pipeline=world.sales)
    world.target("USER", world.alice, "30.00", pipeline=world.renewals)
    world.deal("10.00", owner=world.alice)
    world.deal("20.00", owner=world.alice, pipeline=world.renewals)
    assert report(conn, world, "USER", world.alice, world.sales) == (
        Decimal("40.00"),
        Decimal("10.00"),
        Decimal("0.2500"),
    )
    assert report(conn, world, "USER", world.alice, world.renewals) == (
        Decimal("30.00"),
        Decimal("20.00"),
        Decimal("0.6667"),
    )
    assert report(conn, world, "USER", world.alice) == (
        Decimal("170.00"),
        Decimal("30.00"),
        Decimal("0.1765"),
    )


def test_zero_target_gives_no_ratio(conn: psycopg.Connection[Any], world: World) -> None:
    world.target("USER", world.alice, "0.00")
    world.deal("10.00", owner=world.alice)
    assert report(conn, world, "USER", world.alice) == (Decimal("0.00"), Decimal("10.00"), None)


def test_ratio_rounds_half_away_from_zero(conn: psycopg.Connection[Any], world: World) -> None:
    world.target("USER", world.alice, "20000.00")
    world.deal("1.00", owner=world.alice)  # 0.00005 exactly
    world.target("USER", world.bob, "20000.00")
    world.deal("0.99", owner=world.bob)  # 0.0000495
    assert report(conn, world, "USER", world.alice)[2] == Decimal("0.0001")
    assert report(conn, world, "USER", world.bob)[2] == Decimal("0.0000")


def test_other_tenants_never_leak_in(conn: psycopg.Connection[Any], world: World) -> None:
    crm = world.crm
    other = crm.tenant("Globex")
    # The same user id exists in both tenants (keys are per tenant).
    conn.execute(
        "INSERT INTO dyno_crm.crm_user (tenant_id, id, name) VALUES (%s, %s, 'Twin')",
        (other, world.alice),
    )
    conn.execute(
        "INSERT INTO dyno_crm.crm_group (tenant_id, id, name) VALUES (%s, %s, 'Twin')",
        (other, world.team),
    )
    conn.commit()
    pipeline = crm.pipeline(other)
    stage = crm.stage(other, pipeline)
    crm.deal(
        other,
        pipeline,
        stage,
        "999.00",
        expected=dt.date(2026, 2, 1),
        owner=world.alice,
        owner_group=world.team,
    )
    crm.target(other, "USER", world.alice, *Q1, "5.00")
    world.deal("1.00", owner=world.alice)
    assert report(conn, world, "USER", world.alice) == (None, Decimal("1.00"), None)
    assert report(conn, world, "GROUP", world.team) == (None, Decimal("0"), None)


def test_no_valid_input_overflows(conn: psycopg.Connection[Any], world: World) -> None:
    largest = "9999999999999999.99"
    for _ in range(30):
        world.deal(largest, owner=world.alice)
    world.target("USER", world.alice, "0.01")
    target, open_amount, ratio = report(conn, world, "USER", world.alice)
    assert open_amount == Decimal(largest) * 30
    assert ratio == Decimal("29999999999999999970.0000")
    assert target == Decimal("0.01")


def test_inactive_user_can_still_be_reported(conn: psycopg.Connection[Any], world: World) -> None:
    former = world.crm.user(world.tenant, "Former", active=False)
    world.deal("5.00", owner=former)
    assert report(conn, world, "USER", former)[1] == Decimal("5.00")


def test_stored_run_is_a_snapshot(conn: psycopg.Connection[Any], world: World) -> None:
    world.deal("10.00", owner=world.alice)
    run_id = run_pipeline_coverage_report(conn, world.tenant, *Q1, "USER", world.alice)
    world.deal("90.00", owner=world.alice)
    stored = get_run(conn, run_id)
    assert [row.open_amount for row in stored.rows] == [Decimal("10.00")]
    assert stored.rows[0].principal_name == "Alice"


# --- validation: clear errors, nothing written -------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"principal_type": "TEAM"}, ValidationError, "principal_type"),
        ({"principal_type": "user"}, ValidationError, "principal_type"),
        ({"tenant_id": "not-a-uuid"}, ValidationError, "tenant_id"),
        ({"principal_id": 42}, ValidationError, "principal_id"),
        ({"pipeline_id": "x"}, ValidationError, "pipeline_id"),
        ({"period_end": dt.date(2026, 1, 1)}, ValidationError, "period_end"),
        ({"period_end": dt.date(2025, 12, 1)}, ValidationError, "period_end"),
        ({"period_start": "2026-02-30"}, ValidationError, "period_start"),
        ({"period_start": dt.datetime(2026, 1, 1, 12)}, ValidationError, "period_start"),
        ({"tenant_id": uuid.UUID(int=1)}, NotFoundError, "tenant"),
        ({"principal_id": uuid.UUID(int=2)}, NotFoundError, "principal_id"),
        ({"principal_type": "GROUP"}, NotFoundError, "no group"),
        ({"pipeline_id": uuid.UUID(int=3)}, NotFoundError, "pipeline_id"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(
    conn: psycopg.Connection[Any],
    world: World,
    change: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    arguments: dict[str, Any] = {
        "tenant_id": world.tenant,
        "period_start": Q1[0],
        "period_end": Q1[1],
        "principal_type": "USER",
        "principal_id": world.alice,
        "pipeline_id": None,
    }
    arguments.update(change)
    with pytest.raises(error, match=message):
        run_pipeline_coverage_report(conn, **arguments)
    assert stored_runs(conn) == (0, 0)


def test_principal_of_another_tenant_is_not_found(
    conn: psycopg.Connection[Any], world: World
) -> None:
    other = world.crm.tenant("Globex")
    stranger = world.crm.user(other, "Stranger")
    foreign_pipeline = world.crm.pipeline(other)
    with pytest.raises(NotFoundError, match="no user"):
        run_pipeline_coverage_report(conn, world.tenant, *Q1, "USER", stranger)
    with pytest.raises(NotFoundError, match="no pipeline"):
        run_pipeline_coverage_report(conn, world.tenant, *Q1, "USER", world.alice, foreign_pipeline)
    assert stored_runs(conn) == (0, 0)


def test_errors_are_one_package_tree(world: World, conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InputError):
        run_pipeline_coverage_report(conn, world.tenant, *Q1, "NOBODY", world.alice)
