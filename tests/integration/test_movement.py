"""Movement between two runs (SPEC.md §11) against an independent waterfall.

A tenant is run (A), its raw data is changed the ways deals really change — won, lost,
dated out of the period, reassigned, deleted, new, re-valued, moved to another
pipeline, out of and into a currency without a rate — and run again (B). The oracle
(tests/movement_oracle.py) computes the waterfall from the two raw snapshots, and
every row's steps and every deal's step, amount and reason must match; the identity
``start - won - lost - left + entered + changed = end`` must hold for every pair.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import (
    IncomparableRunsError,
    Movement,
    NotFoundError,
    ValidationError,
    compare_runs,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.cli import main
from pipeline_coverage.db import distribute as citus
from pipeline_coverage.db import migrate
from pipeline_coverage.render import MOVEMENT_CSV_COLUMNS, MOVEMENT_DEAL_COLUMNS
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from pipeline_coverage.sql import query
from pipeline_coverage.web.schemas import Comparison
from tests.factory import Crm, random_tenant
from tests.integration.test_citus import citus_url
from tests.movement_oracle import STEPS, ExpectedRow, waterfall
from tests.oracle import Options, Oracle
from tests.worlds import World

__all__ = ["citus_url"]  # the fixture: a fresh database on every node of a Citus cluster
Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
AS_OF_A = dt.date(2026, 2, 1)
AS_OF_B = dt.date(2026, 2, 8)


def assert_matches(movement: Movement, expected: dict[Any, ExpectedRow]) -> None:
    """Every row and every deal of the movement equals the oracle's; the identity holds."""
    got = {(r.principal_type, r.principal_id, r.pipeline_id): r for r in movement.rows}
    assert set(got) == set(expected)
    for key, row in got.items():
        want = expected[key]
        assert row.identity_holds, key
        assert (row["start_amount"], row["end_amount"]) == (want.start_amount, want.end_amount), key
        for step in STEPS:
            assert row[f"{step}_amount"] == want.amounts[step], (key, step)
            assert row[f"{step}_count"] == want.counts[step], (key, step)
    if movement.deals is None:
        return
    got_deals = {
        (d.principal_type, d.principal_id, d.pipeline_id, d.deal_id): (
            d.step, d.movement_amount, d.reason)
        for d in movement.deals
    }  # fmt: skip
    want_deals = {
        (*key, deal_id): (deal.step, deal.movement_amount, deal.reason)
        for key, row in expected.items()
        for deal_id, deal in row.deals.items()
    }
    assert got_deals == want_deals
    for deal in movement.deals:
        # A deal of a step is listed with the run(s) it was open in.
        if deal.step != "entered":
            assert deal.in_a is not None
            assert deal.in_a.deal_class == "OPEN"
        if deal.step in ("changed", "entered"):
            assert deal.in_b is not None
            assert deal.in_b.deal_class == "OPEN"
        assert (deal.now is not None) == (deal.step in ("left", "entered"))


@dataclass
class Story:
    """A tenant whose deals all move between run A and run B, one way each."""

    tenant: uuid.UUID
    ann: uuid.UUID
    bob: uuid.UUID
    team: uuid.UUID
    sales: uuid.UUID
    renewals: uuid.UUID
    deals: dict[str, uuid.UUID]


def build_story(conn: psycopg.Connection[Any]) -> Story:
    crm = Crm(conn)
    tenant = crm.tenant("Movers")
    ann, bob = crm.user(tenant, "Ann"), crm.user(tenant, "Bob")
    team = crm.group(tenant, "Team")
    sales, renewals = crm.pipeline(tenant, "Sales"), crm.pipeline(tenant, "Renewals")
    stage = {
        (p, s): crm.stage(tenant, p, s)
        for p in (sales, renewals)
        for s in ("IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED")
    }
    in_q1 = dt.date(2026, 2, 20)

    def deal(amount: str | None, owner: uuid.UUID = ann, **kw: Any) -> uuid.UUID:
        pipeline = kw.pop("pipeline", sales)
        state = kw.pop("state", "IN_PROGRESS")
        return crm.deal(tenant, pipeline, stage[(pipeline, state)], amount,
                        kw.pop("expected", in_q1), owner=owner, **kw)  # fmt: skip

    deals = {
        "won": deal("1000"),
        "lost": deal("400.10"),
        "slipped": deal("2500"),
        "reassigned": deal("700", owner_group=team),
        "deleted": deal("300.30"),
        "shrank": deal("1200"),
        "grew": deal(None),
        "moved_pipeline": deal("800"),
        "eur": deal("1000"),
        "gbp": deal("500"),
        "to_jpy": deal("600"),
        "undated": deal("90"),
        "pulled_in": deal("450", expected=dt.date(2026, 5, 5)),
        "reopened": deal("350", state="DONE_SUCCESS", close=dt.date(2026, 1, 15)),
        "steady": deal("5000", owner=bob, assignee=ann),
        "team_only": deal("66.60", owner=bob, assignee_group=team),
    }
    conn.execute("UPDATE dyno_crm.deal SET currency = 'EUR' WHERE id = %s", (deals["eur"],))
    conn.execute("UPDATE dyno_crm.deal SET currency = 'GBP' WHERE id = %s", (deals["gbp"],))
    conn.execute(
        "INSERT INTO dyno_crm.exchange_rate (tenant_id, currency, valid_from, rate) VALUES"
        " (%(t)s, 'EUR', '2025-01-01', 1.1), (%(t)s, 'EUR', '2026-02-05', 1.2),"
        " (%(t)s, 'GBP', '2026-02-06', 1.25)",
        {"t": tenant},
    )
    conn.commit()
    crm.target(tenant, "USER", ann, *Q1, "4000")
    crm.target(tenant, "GROUP", team, *Q1, "1000")
    return Story(tenant, ann, bob, team, sales, renewals, deals)


def move_story(conn: psycopg.Connection[Any], s: Story) -> None:
    """Between the runs: one change per deal, as a CRM's users make them."""
    d = s.deals

    def stage_of(pipeline: uuid.UUID, state: str) -> Any:
        row = conn.execute(
            "SELECT id FROM dyno_crm.pipeline_stage WHERE tenant_id = %s AND pipeline_id = %s"
            " AND stage_state = %s",
            (s.tenant, pipeline, state),
        ).fetchone()
        assert row is not None
        return row[0]

    def update(deal: str, assignments: str, *values: Any) -> None:
        conn.execute(
            f"UPDATE dyno_crm.deal SET {assignments} WHERE tenant_id = %s AND id = %s",  # noqa: S608
            (*values, s.tenant, d[deal]),
        )

    update("won", "stage_id = %s, close_date = '2026-02-07'", stage_of(s.sales, "DONE_SUCCESS"))
    update("lost", "stage_id = %s, close_date = '2026-02-06'", stage_of(s.sales, "DONE_FAILED"))
    update("slipped", "expected_close_date = '2026-04-15'")
    update("reassigned", "owned_by_user_id = %s", s.bob)
    conn.execute("DELETE FROM dyno_crm.deal WHERE id = %s", (d["deleted"],))
    update("shrank", "amount = 600")
    update("grew", "amount = 250.55")
    update("moved_pipeline", "pipeline_id = %s, stage_id = %s", s.renewals,
           stage_of(s.renewals, "IN_PROGRESS"))  # fmt: skip
    update("to_jpy", "currency = 'JPY'")
    update("undated", "expected_close_date = NULL, close_date = NULL")
    update("pulled_in", "expected_close_date = '2026-03-30'")
    update("reopened", "stage_id = %s", stage_of(s.sales, "IN_PROGRESS"))
    update("team_only", "assigned_group_id = NULL")
    crm = Crm(conn)
    open_stage = stage_of(s.sales, "IN_PROGRESS")
    d["new"] = crm.deal(s.tenant, s.sales, open_stage, "999.99", dt.date(2026, 3, 1), owner=s.ann)
    conn.commit()


def _options(as_of: dt.date, **kw: Any) -> Options:
    return Options(*Q1, as_of=as_of, **kw)


@pytest.mark.parametrize("by_pipeline", [False, True])
def test_batches_match_the_oracle_deal_by_deal(
    conn: psycopg.Connection[Any], by_pipeline: bool
) -> None:
    story = build_story(conn)
    before = Oracle(conn, story.tenant)
    run_a = run_pipeline_coverage_batch(conn, story.tenant, *Q1, by_pipeline=by_pipeline,
                                        as_of=AS_OF_A)  # fmt: skip
    move_story(conn, story)
    after = Oracle(conn, story.tenant)
    run_b = run_pipeline_coverage_batch(conn, story.tenant, *Q1, by_pipeline=by_pipeline,
                                        as_of=AS_OF_B)  # fmt: skip
    movement = compare_runs(conn, run_a, run_b, story.tenant, deals=True)
    expected = waterfall(
        before, after, _options(AS_OF_A, by_pipeline=by_pipeline),
        _options(AS_OF_B, by_pipeline=by_pipeline),
    )  # fmt: skip
    assert_matches(movement, expected)

    # Ann's story, read the way a manager reads it.
    ann = [r for r in movement.rows if r.principal_id == story.ann]
    assert all(r.principal_name == "Ann" for r in ann)
    by_deal = {
        d.deal_id: d
        for d in movement.deals or ()
        if d.principal_id == story.ann and d.deal_id != story.deals["moved_pipeline"]
    }
    name = {v: k for k, v in story.deals.items()}
    steps = {name[deal_id]: (d.step, d.reason) for deal_id, d in by_deal.items()}
    assert steps["won"] == ("won", None)
    assert steps["lost"] == ("lost", None)
    assert steps["slipped"] == ("left", "OUT_OF_SCOPE")
    assert steps["reassigned"] == ("left", "REASSIGNED")
    assert steps["deleted"] == ("left", "DELETED")
    assert steps["undated"] == ("left", "UNDATED")
    assert steps["to_jpy"] == ("left", "NO_RATE")
    assert steps["gbp"] == ("entered", "NO_RATE")
    assert steps["pulled_in"] == ("entered", "OUT_OF_SCOPE")
    assert steps["reopened"] == ("entered", "REOPENED")
    assert steps["new"] == ("entered", "OUT_OF_SCOPE")
    assert steps["shrank"] == ("changed", None)
    assert steps["grew"] == ("changed", None)
    assert steps["eur"] == ("changed", None)  # the rate moved between the as_of days
    assert "steady" not in steps  # open in both, same amount: adds nothing, not listed
    moved = {
        (d.pipeline_id, d.step, d.reason)
        for d in movement.deals or ()
        if d.deal_id == story.deals["moved_pipeline"] and d.principal_id == story.ann
    }
    if by_pipeline:  # out of the Sales row, into the Renewals row
        assert moved == {
            (story.sales, "left", "PIPELINE_CHANGED"),
            (story.renewals, "entered", "PIPELINE_CHANGED"),
        }
    else:
        assert moved == set()  # same amount, same row
    slipped = by_deal[story.deals["slipped"]]
    assert slipped.now is not None
    assert slipped.now.placed_on == dt.date(2026, 4, 15)
    assert slipped.in_a is not None
    assert slipped.in_a.placed_on == dt.date(2026, 2, 20)
    assert slipped.movement_amount == Decimal("-2500.00")
    deleted = by_deal[story.deals["deleted"]]
    assert deleted.now is not None
    assert not deleted.now.exists
    reassigned = by_deal[story.deals["reassigned"]]
    assert reassigned.now is not None
    assert reassigned.now.owner_name == "Bob"
    assert reassigned.in_b is not None
    assert reassigned.in_b.owner_user_id == story.bob
    shrank = by_deal[story.deals["shrank"]]
    assert shrank.in_a is not None
    assert shrank.in_b is not None
    assert (shrank.in_a.amount, shrank.in_b.amount) == (Decimal("1200.00"), Decimal("600.00"))
    # Bob gained the reassigned deal; the team lost the deal it was assigned.
    bob = {d.deal_id: d for d in movement.deals or () if d.principal_id == story.bob}
    assert (bob[story.deals["reassigned"]].step, bob[story.deals["reassigned"]].reason) == (
        "entered", "REASSIGNED")  # fmt: skip
    team = {d.deal_id: d for d in movement.deals or () if d.principal_id == story.team}
    assert team[story.deals["team_only"]].step == "left"


def test_single_runs_and_a_single_against_a_batch(conn: psycopg.Connection[Any]) -> None:
    story = build_story(conn)
    before = Oracle(conn, story.tenant)
    single_a = run_pipeline_coverage_report(conn, story.tenant, *Q1, "USER", story.ann,
                                            as_of=AS_OF_A)  # fmt: skip
    move_story(conn, story)
    after = Oracle(conn, story.tenant)
    single_b = run_pipeline_coverage_report(conn, story.tenant, *Q1, "USER", story.ann,
                                            as_of=AS_OF_B)  # fmt: skip
    batch_b = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_B)
    ann = ("USER", story.ann)
    o_a, o_b = _options(AS_OF_A), _options(AS_OF_B)
    singles = compare_runs(conn, single_a, single_b, deals=True)
    assert_matches(singles, waterfall(before, after, o_a, o_b, single_a=ann, single_b=ann))
    mixed = compare_runs(conn, single_a, batch_b, story.tenant, deals=True)
    assert (mixed.principal_type, mixed.principal_id) == ann  # the single run's principal
    assert_matches(mixed, waterfall(before, after, o_a, o_b, single_a=ann))
    # The reassigned deal: the single run B does not hold it (it no longer names
    # Ann); the batch saw it credited to Bob.
    reasons = {d.deal_id: d.reason for d in mixed.deals or ()}
    assert reasons[story.deals["reassigned"]] == "REASSIGNED"
    reasons = {d.deal_id: d.reason for d in singles.deals or ()}
    assert reasons[story.deals["reassigned"]] == "OUT_OF_SCOPE"
    # Asking for one principal of a batch pair gives that principal's rows only.
    batch_a = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_B)
    one = compare_runs(conn, batch_a, batch_b, principal_type="GROUP", principal_id=story.team)
    assert [(r.principal_type, r.principal_id) for r in one.rows] == [("GROUP", story.team)]
    assert all(r.identity_holds for r in one.rows)
    # (A run compared with itself moves nothing.)
    assert all(r["changed_count"] == 0 and r["left_count"] == 0 for r in one.rows)


@pytest.mark.parametrize("seed", [3, 11])
def test_random_changes_match_the_oracle(conn: psycopg.Connection[Any], seed: int) -> None:
    """A random tenant, randomly changed: every row, step and deal as the oracle says."""
    tenant = random_tenant(conn, seed, deals=300, period=Q1)
    before = Oracle(conn, tenant)
    pipelines = sorted(before.pipelines)
    runs_a = {
        flag: run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=flag, as_of=AS_OF_A)
        for flag in (False, True)
    }
    filtered_a = run_pipeline_coverage_batch(conn, tenant, *Q1, pipelines[0], as_of=AS_OF_A)
    scramble(conn, tenant, seed)
    after = Oracle(conn, tenant)
    for flag, run_a in runs_a.items():
        run_b = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=flag,
                                            as_of=dt.date(2026, 6, 2))  # fmt: skip
        expected = waterfall(before, after, _options(AS_OF_A, by_pipeline=flag),
                             _options(dt.date(2026, 6, 2), by_pipeline=flag))  # fmt: skip
        assert_matches(compare_runs(conn, run_a, run_b, tenant, deals=True), expected)
        assert_matches(compare_runs(conn, run_a, run_b, tenant), expected)
        # Each principal alone (`compare --principal`, which reads only the stored
        # chunks holding its deals: owners changed, so deals changed chunks).
        for kind, principal in sorted({key[:2] for key in expected}):
            mine = {key: row for key, row in expected.items() if key[:2] == (kind, principal)}
            alone = compare_runs(conn, run_a, run_b, tenant, deals=True,
                                 principal_type=kind, principal_id=principal)  # fmt: skip
            assert_matches(alone, mine)
    filtered_b = run_pipeline_coverage_batch(conn, tenant, *Q1, pipelines[0], as_of=AS_OF_B)
    expected = waterfall(before, after, _options(AS_OF_A, pipeline=pipelines[0]),
                         _options(AS_OF_B, pipeline=pipelines[0]))  # fmt: skip
    assert_matches(compare_runs(conn, filtered_a, filtered_b, tenant, deals=True), expected)


def test_rolled_up_runs_match_the_oracle(conn: psycopg.Connection[Any]) -> None:
    """Teams rolled up over their members and sub-teams (SPEC.md §10): a deal moves
    for every team above its rep too, and the oracle's roll-up agrees step by step."""
    tenant = random_tenant(conn, 17, deals=300, period=Q1)
    before = Oracle(conn, tenant)
    assert any(parent is not None for parent in before.parent.values())
    run_a = run_coverage(conn, coverage_request(tenant, *Q1, as_of=AS_OF_A, rollup=True)).run_id
    scramble(conn, tenant, 17)
    after = Oracle(conn, tenant)
    run_b = run_coverage(conn, coverage_request(tenant, *Q1, as_of=AS_OF_B, rollup=True)).run_id
    expected = waterfall(before, after, _options(AS_OF_A, rollup=True),
                         _options(AS_OF_B, rollup=True))  # fmt: skip
    movement = compare_runs(conn, run_a, run_b, tenant, deals=True)
    assert_matches(movement, expected)
    assert any(d.principal_type == "GROUP" and d.step != "changed" for d in movement.deals or ())
    # A rolled-up run and a plain one measure different things.
    plain = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=AS_OF_B)
    with pytest.raises(IncomparableRunsError, match="rollup"):
        compare_runs(conn, run_a, plain, tenant)


def scramble(conn: psycopg.Connection[Any], tenant: uuid.UUID, seed: int) -> None:
    """Change a random third of a tenant's deals in every way a deal changes."""
    rng = random.Random(seed * 31)
    with conn.cursor() as cur:
        deals = cur.execute(
            "SELECT id, pipeline_id FROM dyno_crm.deal WHERE tenant_id = %s ORDER BY id",
            (tenant,),
        ).fetchall()
        stages = cur.execute(
            "SELECT pipeline_id, stage_state, id FROM dyno_crm.pipeline_stage"
            " WHERE tenant_id = %s ORDER BY id",
            (tenant,),
        ).fetchall()
        users = [
            r[0]
            for r in cur.execute(
                "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s ORDER BY id", (tenant,)
            )
        ]
        pipelines = sorted({s[0] for s in stages})
        by_state = {(p, state): stage for p, state, stage in stages}
        for deal_id, pipeline in deals:
            roll = rng.random()
            if roll > 0.4:
                continue
            change = rng.choice(["won", "lost", "date", "owner", "delete", "amount",
                                 "pipeline", "currency", "undate", "reopen"])  # fmt: skip
            where = (tenant, deal_id)
            if change in ("won", "lost", "reopen"):
                state = {"won": "DONE_SUCCESS", "lost": "DONE_FAILED"}.get(change, "IN_PROGRESS")
                cur.execute(
                    "UPDATE dyno_crm.deal SET stage_id = %s, close_date = %s"
                    " WHERE tenant_id = %s AND id = %s",
                    (by_state[(pipeline, state)], dt.date(2026, 3, 3), *where),
                )
            elif change == "date":
                when = rng.choice(
                    [
                        dt.date(2026, 4, 1),
                        dt.date(2025, 12, 31),
                        dt.date(2026, 3, 31),
                        dt.date(2026, 1, 1),
                    ]
                )
                cur.execute(
                    "UPDATE dyno_crm.deal SET expected_close_date = %s"
                    " WHERE tenant_id = %s AND id = %s",
                    (when, *where),
                )
            elif change == "owner":
                cur.execute(
                    "UPDATE dyno_crm.deal SET owned_by_user_id = %s, assigned_user_id = %s"
                    " WHERE tenant_id = %s AND id = %s",
                    (rng.choice([None, *users]), rng.choice([None, *users]), *where),
                )
            elif change == "delete":
                cur.execute("DELETE FROM dyno_crm.deal WHERE tenant_id = %s AND id = %s", where)
            elif change == "amount":
                amount = rng.choice([None, Decimal(0), Decimal(rng.randint(1, 10**7)) / 100])
                cur.execute(
                    "UPDATE dyno_crm.deal SET amount = %s WHERE tenant_id = %s AND id = %s",
                    (amount, *where),
                )
            elif change == "pipeline":
                other = rng.choice(pipelines)
                cur.execute(
                    "UPDATE dyno_crm.deal SET pipeline_id = %s, stage_id = %s"
                    " WHERE tenant_id = %s AND id = %s",
                    (other, by_state[(other, "IN_PROGRESS")], *where),
                )
            elif change == "currency":
                cur.execute(
                    "UPDATE dyno_crm.deal SET currency = %s WHERE tenant_id = %s AND id = %s",
                    (rng.choice([None, "EUR", "GBP", "JPY"]), *where),
                )
            else:
                cur.execute(
                    "UPDATE dyno_crm.deal SET expected_close_date = NULL,"
                    " close_date = NULL WHERE tenant_id = %s AND id = %s",
                    where,
                )
        crm = Crm(conn)
        conn.commit()
        open_stage = by_state[(pipelines[0], "IN_PROGRESS")]
        for n in range(20):
            crm.deal(tenant, pipelines[0], open_stage, f"{n * 37}.5", dt.date(2026, 2, n + 1),
                     owner=rng.choice(users))  # fmt: skip
    conn.commit()


def test_runs_that_measure_different_things_are_refused(conn: psycopg.Connection[Any]) -> None:
    story = build_story(conn)
    base = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_A)
    q2 = (dt.date(2026, 4, 1), dt.date(2026, 7, 1))
    others = {
        "period": run_pipeline_coverage_batch(conn, story.tenant, *q2),
        "pipeline filter": run_pipeline_coverage_batch(conn, story.tenant, *Q1, story.sales),
        "by_pipeline": run_pipeline_coverage_batch(conn, story.tenant, *Q1, by_pipeline=True),
        "target_match": run_pipeline_coverage_batch(conn, story.tenant, *Q1,
                                                    target_match="within"),
        "rollup": run_pipeline_coverage_batch(conn, story.tenant, *Q1),
    }  # fmt: skip
    conn.execute(
        "UPDATE dyno_crm.report_run SET parameters = parameters || '{\"rollup\": true}'"
        " WHERE id = %s",
        (others["rollup"],),
    )
    conn.commit()
    for what, run in others.items():
        with pytest.raises(IncomparableRunsError, match=f"run_b: its {what} is"):
            compare_runs(conn, base, run, story.tenant)
    # A missing rollup key is false, the as_of and the lookback may differ.
    later = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_B,
                                        win_rate_lookback_days=90)  # fmt: skip
    conn.execute(
        "UPDATE dyno_crm.report_run SET parameters = parameters - 'rollup' WHERE id = %s",
        (later,),
    )
    conn.commit()
    assert compare_runs(conn, base, later).rows
    # A run stored before runs kept their deals (migration 0005) cannot be told apart.
    legacy = run_pipeline_coverage_batch(conn, story.tenant, *Q1)
    conn.execute(
        "UPDATE dyno_crm.report_pipeline_coverage_fact SET open_count = NULL WHERE run_id = %s",
        (legacy,),
    )
    conn.execute("DELETE FROM dyno_crm.report_run_credit WHERE run_id = %s", (legacy,))
    conn.execute("DELETE FROM dyno_crm.report_run_deals WHERE run_id = %s", (legacy,))
    conn.execute(  # (nor did it build its credits on another run: migration 0018)
        "UPDATE dyno_crm.report_run SET credit_base_run_id = NULL, credit_chain = NULL"
        " WHERE id = %s",
        (legacy,),
    )
    conn.commit()
    with pytest.raises(IncomparableRunsError, match=r"run_a: run .* before runs kept their deals"):
        compare_runs(conn, legacy, base)
    # Two single runs of different principals.
    ann = run_pipeline_coverage_report(conn, story.tenant, *Q1, "USER", story.ann)
    bob = run_pipeline_coverage_report(conn, story.tenant, *Q1, "USER", story.bob)
    with pytest.raises(IncomparableRunsError, match="different principals"):
        compare_runs(conn, ann, bob)
    with pytest.raises(ValidationError, match=r"principal_id: .* not in the comparison"):
        compare_runs(conn, ann, base, principal_type="USER", principal_id=story.bob)
    # Another tenant's run: not found when scoped, refused when not.
    crm = Crm(conn)
    stranger = crm.tenant("Stranger")
    theirs = run_pipeline_coverage_batch(conn, stranger, *Q1)
    with pytest.raises(NotFoundError, match="run_b: no run"):
        compare_runs(conn, base, theirs, story.tenant)
    with pytest.raises(IncomparableRunsError, match="run_b: its tenant is"):
        compare_runs(conn, base, theirs)
    with pytest.raises(NotFoundError, match="run_a: no run"):
        compare_runs(conn, uuid.uuid4(), base)
    with pytest.raises(ValidationError, match="run_a: not a UUID"):
        compare_runs(conn, "nope", base)


# --- the command line ----------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _no_floats(value: str) -> Any:
    raise AssertionError(f"a float in JSON output: {value}")


def test_compare_on_the_command_line(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("PIPELINE_COVERAGE_DEBUG", raising=False)
    story = build_story(conn)
    before = Oracle(conn, story.tenant)
    run_a = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_A)
    move_story(conn, story)
    after = Oracle(conn, story.tenant)
    run_b = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_B)
    expected = waterfall(before, after, _options(AS_OF_A), _options(AS_OF_B))
    ann = expected[("USER", story.ann, None)]

    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b))
    assert code == 0
    assert "Movement · Movers" in out
    line = next(text for text in out.splitlines() if " Ann " in text)
    assert f"{ann.start_amount:,.2f}" in line
    assert f"{-ann.amounts['left']:+,.2f}" in line
    assert f"{ann.end_amount:,.2f}" in line
    # Ann's coverage of her remaining quota then and now, as each run's table has it.
    then, now = (
        oracle.row(_options(day), "USER", story.ann, None)["remaining_coverage_ratio"]
        for oracle, day in ((before, AS_OF_A), (after, AS_OF_B))
    )
    assert f"{then:,.2f}x → {now:,.2f}x" in line
    assert "Coverage of remaining quota" in out

    # Every amount of every row with its two decimals, also a step without any deal.
    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--format", "json")
    assert code == 0
    amounts = [value for row in json.loads(out)["rows"] for key, value in row.items()
               if key.endswith("_amount") and value is not None]  # fmt: skip
    assert "0.00" in amounts
    assert all(re.fullmatch(r"-?\d+\.\d{2}", value) for value in amounts), amounts
    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--tenant", "Movers",
                        "--principal", "Ann", "--deals", "--format", "json")  # fmt: skip
    assert code == 0
    document = json.loads(out, parse_float=_no_floats)
    assert [row["principal_id"] for row in document["rows"]] == [str(story.ann)]
    [row] = document["rows"]
    steps = {name: Decimal(row[f"{name}_amount"]) for name in ("start", *STEPS, "end")}
    assert steps["start"] - steps["won"] - steps["lost"] - steps["left"] + steps["entered"] + (
        steps["changed"]) == steps["end"] == ann.end_amount  # fmt: skip
    listed = {(d["deal_id"], d["step"], d["reason"]) for d in document["deals"]}
    assert listed == {(str(k), v.step, v.reason) for k, v in ann.deals.items()}
    slipped = next(d for d in document["deals"] if d["deal_id"] == str(story.deals["slipped"]))
    assert slipped["now"]["placed_on"] == "2026-04-15"
    assert slipped["a"]["amount"] == "2500.00"
    assert slipped["b"] is None

    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--format", "csv")
    assert code == 0
    lines = list(csv.DictReader(io.StringIO(out)))
    assert tuple(lines[0]) == MOVEMENT_CSV_COLUMNS
    assert len(lines) == len(expected)
    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--deals",
                        "--format", "csv")  # fmt: skip
    assert code == 0
    deal_lines = list(csv.DictReader(io.StringIO(out)))
    assert tuple(deal_lines[0]) == MOVEMENT_DEAL_COLUMNS
    assert len(deal_lines) == sum(len(row.deals) for row in expected.values())
    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--deals")
    assert code == 0
    assert "OUT_OF_SCOPE" in out
    assert "deleted" in out

    # Runs that cannot be compared, and bad input: one line, exit 2, nothing printed.
    q2 = run_pipeline_coverage_batch(conn, story.tenant, dt.date(2026, 4, 1), dt.date(2026, 7, 1))
    for args, message in (
        ((str(run_a), str(q2)), "run_b: its period is 2026-04-01 to 2026-07-01, run A's is"),
        ((str(run_a), str(uuid.uuid4())), "run_b: no run"),
        (
            (str(run_a), str(run_b), "--principal-type", "USER"),
            "--principal-type goes with --principal-id",
        ),
        ((str(run_a), str(run_b), "--principal", "Nobody"), "Nobody"),
    ):
        code, out, err = _cli(capsys, db_url, "compare", *args)
        assert code == 2, err
        assert out == ""
        assert len(err.splitlines()) == 1, err
        assert err.startswith("pipeline-coverage: error:")
        assert message in err


# --- the HTTP API ----------------------------------------------------------------------


def test_compare_over_http_is_tenant_scoped(
    conn: psycopg.Connection[Any], api: httpx.Client, world: World, other: World
) -> None:
    before = Oracle(conn, world.tenant)
    run_a = run_pipeline_coverage_batch(conn, world.tenant, *Q1, as_of=AS_OF_A)
    conn.execute("UPDATE dyno_crm.deal SET amount = 400 WHERE id = %s", (world.big_deal,))
    conn.commit()
    after = Oracle(conn, world.tenant)
    run_b = run_pipeline_coverage_batch(conn, world.tenant, *Q1, as_of=AS_OF_B)
    expected = waterfall(before, after, _options(AS_OF_A), _options(AS_OF_B))
    url = f"/v1/coverage-runs/{run_a}/compare/{run_b}"

    response = api.get(url, params={"deals": "true"}, headers=world.auth)
    assert response.status_code == 200, response.text
    document = json.loads(response.text, parse_float=_no_floats)
    Comparison.model_validate(document)  # the body is what the OpenAPI document says
    assert (document["run_a"]["run_id"], document["run_b"]["run_id"]) == (str(run_a), str(run_b))
    rows = {(r["principal_type"], r["principal_id"]): r for r in document["rows"]}
    assert set(rows) == {(kind, str(who)) for kind, who, _ in expected}
    for (kind, who, _), want in expected.items():
        row = rows[(kind, str(who))]
        assert Decimal(row["start_amount"]) == want.start_amount
        assert Decimal(row["end_amount"]) == want.end_amount
        assert Decimal(row["changed_amount"]) == want.amounts["changed"]
    [shrunk] = [d for d in document["deals"] if d["principal_id"] == str(world.ann)]
    assert (shrunk["step"], shrunk["movement_amount"]) == ("changed", "-600.50")
    assert (shrunk["a"]["amount"], shrunk["b"]["amount"]) == ("1000.50", "400.00")

    one = api.get(url, params={"principal_type": "USER", "principal_id": str(world.ann)},
                  headers={**world.auth, "Accept": "text/csv"})  # fmt: skip
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(one.text)))
    assert [line["principal_id"] for line in lines] == [str(world.ann)]
    deals_csv = api.get(url, params={"deals": "true"}, headers={**world.auth, "Accept": "text/csv"})
    assert tuple(next(csv.reader(io.StringIO(deals_csv.text)))) == MOVEMENT_DEAL_COLUMNS

    # Another tenant's run is not found, in either place, exactly like a missing one.
    theirs = run_pipeline_coverage_batch(conn, other.tenant, *Q1)
    for path in (f"/v1/coverage-runs/{run_a}/compare/{theirs}",
                 f"/v1/coverage-runs/{theirs}/compare/{run_a}"):  # fmt: skip
        response = api.get(path, headers=world.auth)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert str(theirs) in response.json()["detail"]
    assert api.get(f"/v1/coverage-runs/{theirs}/compare/{theirs}", headers=other.auth).is_success
    # Runs that cannot be compared, and a half-given principal: 422 naming the field.
    q2 = run_pipeline_coverage_batch(conn, world.tenant, dt.date(2026, 4, 1), dt.date(2026, 7, 1))
    refused = api.get(f"/v1/coverage-runs/{run_a}/compare/{q2}", headers=world.auth)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "run_b"
    assert "period" in refused.json()["detail"]
    half = api.get(url, params={"principal_type": "USER"}, headers=world.auth)
    assert half.status_code == 422
    assert api.get(url).status_code == 401


def test_inside_a_callers_transaction_the_planner_settings_are_put_back(
    conn: psycopg.Connection[Any],
) -> None:
    story = build_story(conn)
    run_a = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_A)
    conn.execute("SET jit = on")
    conn.commit()
    shown = (
        "SELECT current_setting('enable_nestloop'), current_setting('enable_mergejoin'),"
        " current_setting('jit'), current_setting('work_mem')"
    )
    before = conn.execute(shown).fetchone()  # the caller's transaction is open
    movement = compare_runs(conn, run_a, run_a, deals=True)
    assert all(row.identity_holds for row in movement.rows)
    assert movement.deals == ()  # a run against itself: nothing moved
    assert conn.execute(shown).fetchone() == before
    assert before is not None
    assert before[:3] == ("on", "on", "on")
    conn.rollback()


def test_psycopg2_gets_the_same_movement(conn: psycopg.Connection[Any], db_url: str) -> None:
    import psycopg2

    story = build_story(conn)
    run_a = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_A)
    move_story(conn, story)
    run_b = run_pipeline_coverage_batch(conn, story.tenant, *Q1, as_of=AS_OF_B)
    mine = compare_runs(conn, run_a, run_b, story.tenant, deals=True)
    other = psycopg2.connect(db_url)
    try:
        theirs = compare_runs(other, str(run_a), str(run_b), str(story.tenant), deals=True)
    finally:
        other.close()
    assert theirs == mine


# --- on a Citus cluster ----------------------------------------------------------------

CITUS_URL = os.environ.get("CITUS_DATABASE_URL")


@pytest.mark.skipif(not CITUS_URL, reason="CITUS_DATABASE_URL is not set (a Citus coordinator URL)")
def test_compare_on_citus_matches_the_oracle(citus_url: str) -> None:
    """On tables sharded by tenant, the same movement, each statement on one shard."""
    migrate.upgrade(citus_url)
    with psycopg.connect(citus_url) as conn:
        citus.distribute(conn)
        conn.commit()
        tenant = random_tenant(conn, 5, deals=200, period=Q1)
        before = Oracle(conn, tenant)
        run_a = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True, as_of=AS_OF_A)
        scramble(conn, tenant, 5)
        after = Oracle(conn, tenant)
        run_b = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True, as_of=AS_OF_B)
        expected = waterfall(before, after, _options(AS_OF_A, by_pipeline=True),
                             _options(AS_OF_B, by_pipeline=True))  # fmt: skip
        assert_matches(compare_runs(conn, run_a, run_b, tenant, deals=True), expected)
        params = {"tenant_id": str(tenant), "run_a": str(run_a), "run_b": str(run_b),
                  "principal_type": None, "principal_id": None, "deals": True,
                  "principal_types": ["USER"], "principal_ids": [str(uuid.uuid4())],
                  "pipeline_ids": [None], "deal_ids": [str(uuid.uuid4())],
                  "steps": ["left"]}  # fmt: skip
        for name in ("run_pair", "movement_rows", "movement_deals"):
            plan = "\n".join(row[0] for row in conn.execute(
                "EXPLAIN " + query("movement", name), params))  # fmt: skip
            assert re.findall(r"Task Count: (\d+)", plan) == ["1"], (name, plan)
        conn.rollback()


def test_the_movement_speaks_of_the_remaining_quota_as_the_run_table_does(
    conn: psycopg.Connection[Any],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    api: httpx.Client,
) -> None:
    """Run A: 900 of Ann's 1,000 won and 1,516 open, 15.16x of the 100 left; run B: the
    last 100 won, quota met. Compare says so in the CLI, the JSON and the CSV (not
    1.52x → 1.42x, open over the whole target), and the reps' total at each end is
    the run's own total."""
    crm = Crm(conn)
    tenant = crm.tenant("Quota Makers")
    ann = crm.user(tenant, "Ann")
    sales = crm.pipeline(tenant, "Sales")
    open_stage = crm.stage(tenant, sales, "IN_PROGRESS")
    won_stage = crm.stage(tenant, sales, "DONE_SUCCESS")
    in_q1 = dt.date(2026, 2, 20)
    crm.deal(tenant, sales, won_stage, "900", in_q1, owner=ann)
    crm.deal(tenant, sales, open_stage, "1416", in_q1, owner=ann)
    last = crm.deal(tenant, sales, open_stage, "100", in_q1, owner=ann)
    crm.target(tenant, "USER", ann, *Q1, "1000")
    run_a = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=AS_OF_A)
    conn.execute("UPDATE dyno_crm.deal SET stage_id = %s WHERE id = %s", (won_stage, last))
    conn.commit()
    run_b = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=AS_OF_B)

    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b))
    assert code == 0
    assert "Coverage of remaining quota" in out
    [line] = [text for text in out.splitlines() if " Ann " in text]
    assert "15.16x → quota met" in line
    assert "Reps' total, coverage of remaining quota: 15.16x → quota met" in out

    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--format", "json")
    document = json.loads(out)
    [row] = document["rows"]
    assert (row["start_status"], row["start_band"]) == ("coverage", "healthy")
    assert (row["end_status"], row["end_band"]) == ("quota_met", None)
    assert row["start_remaining_coverage_ratio"] == "15.1600"
    assert row["start_coverage_ratio"] == "1.5160"  # (still there, by its own name)
    assert (row["start_won_amount"], row["end_won_amount"]) == ("900.00", "1000.00")
    code, out, _ = _cli(capsys, db_url, "compare", str(run_a), str(run_b), "--format", "csv")
    [line_csv] = list(csv.DictReader(io.StringIO(out)))
    assert (line_csv["start_status"], line_csv["end_status"]) == ("coverage", "quota_met")

    # Over HTTP the same, with the reps' total at each end equal to each run's own.
    key = create_api_key(conn, tenant, "movement")[1]
    auth = {"Authorization": f"Bearer {key}"}
    compared = api.get(f"/v1/coverage-runs/{run_a}/compare/{run_b}", headers=auth).json()
    Comparison.model_validate(compared)
    for side, run in (("start", run_a), ("end", run_b)):
        own = api.get(f"/v1/coverage-runs/{run}", headers=auth).json()["totals"]
        total = compared["totals"][side]
        assert {k: total[k] for k in own} == own
    assert (compared["totals"]["start"]["status"], compared["totals"]["start"]["band"]) == (
        "coverage", "healthy")  # fmt: skip
    assert compared["totals"]["end"]["status"] == "quota_met"
    assert compared["rows"][0]["end_status"] == "quota_met"
