"""A batch run stores each chunk of its deals as what changed since the tenant's
previous batch run of the period (migration 0017): its drill-down is the same as the
same run stored complete, deal for deal, whatever changed in between (values, stage,
owner, deletion, a new deal, a deal leaving the period); prune keeps the runs that
stay whole; a run that others build on is not deleted alone; chains stay short."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pipeline_coverage import prune_runs, run_deals, run_pipeline_coverage_batch
from pipeline_coverage.sql import expand
from pipeline_coverage.store import DealCredit
from tests.factory import Crm, random_tenant
from tests.oracle import Options, Oracle

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
INSIDE = dt.date(2026, 2, 10)


def stored(
    conn: psycopg.Connection[Any], run: uuid.UUID, commit: bool = True
) -> list[tuple[Any, ...]]:
    """Each chunk row of a run: (chunk, base run, chain, deals held, deals removed)."""
    rows = conn.execute(
        "SELECT chunk, base_run_id, chain, cardinality(deal_ids),"
        " COALESCE(cardinality(removed_deal_ids), 0)"
        " FROM dyno_crm.report_run_deals WHERE run_id = %s ORDER BY chunk",
        (run,),
    ).fetchall()
    if commit:
        conn.commit()
    return rows


def drilldown(conn: psycopg.Connection[Any], run: uuid.UUID) -> list[DealCredit]:
    deals = run_deals(conn, run)
    conn.commit()
    return deals


def complete_run(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> list[DealCredit]:
    """The drill-down of a batch run stored complete on the tenant's deals as they are
    now: run with no earlier batch in sight (hidden in a transaction rolled back)."""
    with conn.transaction(force_rollback=True):
        conn.execute(
            "UPDATE dyno_crm.report_run"
            " SET parameters = parameters || jsonb_build_object('mode', 'hidden')"
            " WHERE tenant_id = %s",
            (tenant,),
        )
        run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
        assert all(row[1] is None for row in stored(conn, run, commit=False))
        deals = run_deals(conn, run)
    return deals


def in_period_deals(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> list[tuple[Any, ...]]:
    """The tenant's open deals dated in the period that have an owner, oldest id first."""
    rows = conn.execute(
        "SELECT d.id, d.owned_by_user_id, d.assigned_user_id, d.pipeline_id"
        " FROM dyno_crm.deal AS d JOIN dyno_crm.pipeline_stage AS ps ON ps.id = d.stage_id"
        " WHERE d.tenant_id = %s AND d.owned_by_user_id IS NOT NULL"
        " AND ps.stage_state IN ('NOT_STARTED', 'IN_PROGRESS')"
        " AND d.expected_close_date >= %s AND d.expected_close_date < %s ORDER BY d.id",
        (tenant, *Q1),
    ).fetchall()
    conn.commit()
    return rows


def a_day_of_changes(conn: psycopg.Connection[Any], tenant: uuid.UUID, day: int) -> set[uuid.UUID]:
    """One deal re-valued, one won, one handed to another rep (its chunk changes), one
    deleted, one slipped out of the period, and one new deal; returns the deleted and
    slipped ones (no longer in the period)."""
    deals = in_period_deals(conn, tenant)
    users = [r[0] for r in conn.execute(
        "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s ORDER BY id", (tenant,)
    ).fetchall()]  # fmt: skip
    pick = random.Random(day).sample(deals, 6)
    revalued, won, handed, deleted, slipped, copied = pick
    conn.execute(
        "UPDATE dyno_crm.deal SET amount = COALESCE(amount, 0) + 1234.56 WHERE id = %s",
        (revalued[0],),
    )
    conn.execute(
        "UPDATE dyno_crm.deal AS d SET stage_id = ps.id, close_date = %s"
        " FROM dyno_crm.pipeline_stage AS ps"
        " WHERE d.id = %s AND ps.pipeline_id = d.pipeline_id AND ps.stage_state = 'DONE_SUCCESS'",
        (INSIDE, won[0]),
    )
    other = next(u for u in users if u != handed[1])
    conn.execute("UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE id = %s", (other, handed[0]))
    conn.execute("DELETE FROM dyno_crm.deal WHERE id = %s", (deleted[0],))
    conn.execute(
        "UPDATE dyno_crm.deal SET expected_close_date = %s, close_date = NULL WHERE id = %s",
        (Q1[1] + dt.timedelta(days=20), slipped[0]),
    )
    conn.execute(
        "INSERT INTO dyno_crm.deal (tenant_id, id, pipeline_id, stage_id, name, amount,"
        " expected_close_date, owned_by_user_id, assigned_user_id, owned_by_group_id,"
        " assigned_group_id)"
        " SELECT tenant_id, %s, pipeline_id, stage_id, name || ' (copy)', amount,"
        " expected_close_date, owned_by_user_id, assigned_user_id, owned_by_group_id,"
        " assigned_group_id FROM dyno_crm.deal WHERE id = %s",
        (uuid.uuid4(), copied[0]),
    )
    conn.commit()
    return {deleted[0], slipped[0]}


def test_a_batch_after_a_days_changes_stores_what_changed_and_drills_down_the_same(
    conn: psycopg.Connection[Any],
) -> None:
    tenant = random_tenant(conn, 71, deals=600)
    other = random_tenant(conn, 72)  # another tenant's runs are never a base
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    run_pipeline_coverage_batch(conn, other, *Q1, as_of=INSIDE)
    assert all(row[1] is None for row in stored(conn, first)), "the first run is complete"
    gone = a_day_of_changes(conn, tenant, 1)
    expected = complete_run(conn, tenant)
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)

    rows = stored(conn, second)
    deltas = [row for row in rows if row[1] is not None]
    assert deltas, "the chunks build on the first run"
    assert all(row[1] == first and row[2] == [first] for row in deltas)
    held = sum(row[3] for row in rows)
    assert held < len(expected) / 2, (held, len(expected))
    assert sum(row[4] for row in rows) >= 2, "the deleted and slipped deals are removed"

    found = drilldown(conn, second)
    assert found == expected
    assert not gone & {deal.deal_id for deal in found}
    # ... and the oracle agrees, principal by principal
    oracle = Oracle(conn, tenant)
    options = Options(*Q1, as_of=INSIDE)
    by_principal: dict[Any, dict[uuid.UUID, tuple[str, str]]] = {}
    for deal in found:
        key = (deal.principal_type, deal.principal_id)
        by_principal.setdefault(key, {})[deal.deal_id] = (deal.deal_class, deal.credit_reason)
    for key, deals in by_principal.items():
        want = oracle.drilldown(options, key)
        assert deals == {d: v for row in want.values() for d, v in row.items()}, key
    # the first run reads as it did
    assert drilldown(conn, first) != found


def test_an_unchanged_tenant_stores_no_deal_again(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 73)
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    rows = stored(conn, second)
    assert rows
    assert all(row[1] == first and row[3] == 0 and row[4] == 0 for row in rows)
    assert drilldown(conn, second) == drilldown(conn, first)


def test_a_chunk_that_changed_a_lot_is_stored_complete(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 74)
    run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    conn.execute(
        "UPDATE dyno_crm.deal SET amount = COALESCE(amount, 0) + 1 WHERE tenant_id = %s", (tenant,)
    )
    conn.commit()
    expected = complete_run(conn, tenant)
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert all(row[1] is None for row in stored(conn, second))
    assert drilldown(conn, second) == expected


def test_chains_stay_at_most_31_runs_long(conn: psycopg.Connection[Any]) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Chains")
    rep = crm.user(tenant, "Rep")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    deals = [
        crm.deal(tenant, pipeline, stage, Decimal(100 + i), expected=INSIDE, owner=rep)
        for i in range(40)
    ]  # fmt: skip
    conn.commit()
    runs = []
    for day in range(33):
        conn.execute("UPDATE dyno_crm.deal SET amount = amount + 1 WHERE id = %s", (deals[day],))
        conn.commit()
        runs.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    depths = [len(stored(conn, run)[0][2] or []) for run in runs]
    assert depths == [0, *range(1, 32), 0]
    found = drilldown(conn, runs[-2])
    assert {d.deal_id: d.amount for d in found} == {
        deal: Decimal(100 + i + (1 if i < 32 else 0)) for i, deal in enumerate(deals)
    }


@pytest.mark.parametrize("cut", [1, 2], ids=["the complete run goes", "two runs go"])
def test_prune_keeps_the_runs_that_stay_whole(conn: psycopg.Connection[Any], cut: int) -> None:
    tenant = random_tenant(conn, 75, deals=600)
    runs = [run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)]
    for day in (1, 2, 3):
        a_day_of_changes(conn, tenant, day)
        runs.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    assert next(r[2] for r in stored(conn, runs[3]) if r[2]) == runs[:3]
    before = {run: drilldown(conn, run) for run in runs}
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '30 days'"
        " WHERE id = ANY (%s)",
        (runs[:cut],),
    )
    conn.commit()
    pruned = prune_runs(conn, 10, tenant)
    assert pruned.runs == cut
    first_left = runs[cut]
    assert all(row[1] is None for row in stored(conn, first_left)), "stored complete"
    for later in runs[cut + 1 :]:
        chains = {tuple(row[2]) for row in stored(conn, later) if row[2]}
        assert chains
        assert all(chain[0] == first_left for chain in chains), chains
    for run in runs[cut:]:
        assert drilldown(conn, run) == before[run]


def test_a_run_others_build_on_is_not_deleted_alone(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 76)
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    refused = r"fk_report_run_(deals|credit)_base"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=refused):
        conn.execute("DELETE FROM dyno_crm.report_run WHERE id = %s", (first,))
    conn.rollback()
    # both together, or the tenant with everything of it, go at once
    conn.execute("DELETE FROM dyno_crm.report_run WHERE id IN (%s, %s)", (first, second))
    conn.rollback()
    conn.execute("DELETE FROM dyno_crm.tenant WHERE id = %s", (tenant,))
    conn.commit()
    left = conn.execute(
        "SELECT count(*) FROM dyno_crm.report_run_deals WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    assert left == (0,)


def test_a_deal_that_changes_back_moves_back_or_comes_back_reads_as_it_is(
    conn: psycopg.Connection[Any],
) -> None:
    """Day by day: an amount changed and changed back, an amount made NULL and given
    back, a deal handed to another rep (another chunk) and handed back, a deal deleted
    and made again with the same id; every run reads as the same run stored complete."""
    crm = Crm(conn)
    tenant = crm.tenant("Back and forth")
    reps = [crm.user(tenant, f"Rep {i}") for i in range(3)]
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    deals = [
        crm.deal(tenant, pipeline, stage, Decimal(1000 + i), expected=INSIDE, owner=reps[i % 3])
        for i in range(60)
    ]  # fmt: skip
    conn.commit()
    removed = conn.execute("SELECT * FROM dyno_crm.deal WHERE id = %s", (deals[3],)).fetchone()
    conn.commit()
    assert removed is not None
    days = [
        ("UPDATE dyno_crm.deal SET amount = 5 WHERE id = %s", (deals[0],)),
        ("UPDATE dyno_crm.deal SET amount = 1000 WHERE id = %s", (deals[0],)),
        ("UPDATE dyno_crm.deal SET amount = NULL WHERE id = %s", (deals[1],)),
        ("UPDATE dyno_crm.deal SET amount = 1001 WHERE id = %s", (deals[1],)),
        ("UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE id = %s", (reps[2], deals[2])),
        ("UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE id = %s", (reps[2], deals[2])),
        ("UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE id = %s", (reps[2], deals[2])),
        ("DELETE FROM dyno_crm.deal WHERE id = %s", (deals[3],)),
        ("INSERT INTO dyno_crm.deal SELECT (%s::dyno_crm.deal).*", (removed,)),
    ]
    # (the third hand-over is the way back: deals[2] belonged to reps[2] at first)
    days[4] = ("UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE id = %s", (reps[0], deals[2]))
    days[5] = ("UPDATE dyno_crm.deal SET name = 'Renamed' WHERE id = %s", (deals[2],))
    run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    for statement, values in days:
        conn.execute(statement, values)
        conn.commit()
        expected = complete_run(conn, tenant)
        run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
        assert any(row[1] is not None for row in stored(conn, run)), statement
        assert drilldown(conn, run) == expected, statement


def test_prune_of_every_tenant_keeps_each_tenants_runs_whole(
    conn: psycopg.Connection[Any],
) -> None:
    tenants = [random_tenant(conn, seed, deals=300) for seed in (77, 78)]
    runs: dict[uuid.UUID, list[uuid.UUID]] = {}
    for tenant in tenants:
        runs[tenant] = [run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)]
        a_day_of_changes(conn, tenant, 1)
        runs[tenant].append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    before = {run: drilldown(conn, run) for made in runs.values() for run in made}
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '30 days'"
        " WHERE id = ANY (%s)",
        ([made[0] for made in runs.values()],),
    )
    conn.commit()
    assert prune_runs(conn, 10).runs == 2
    for made in runs.values():
        assert all(row[1] is None for row in stored(conn, made[1]))
        assert drilldown(conn, made[1]) == before[made[1]]


def test_downgrade_stores_every_run_complete_again(empty_db_url: str) -> None:
    """Migrations 0018's and 0017's downgrades: each run's credit rows and deals, as the
    product's readers resolved them, are then the run's own (what the code before them
    reads)."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from pipeline_coverage.db import migrate
    from pipeline_coverage.db.connection import connect

    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        tenant = random_tenant(conn, 79, deals=400)
        made = [run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)]
        for day in (1, 2):
            a_day_of_changes(conn, tenant, day)
            made.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
        query = (
            "SELECT run_id, chunk, deal_id, deal_name, amount, reporting_amount, flags"
            " FROM {} ORDER BY run_id, chunk, deal_id"
        )
        before = conn.execute(
            expand(query.format("/* fragment: run_deal_rows */ AS v")), {"tenant_id": tenant}
        ).fetchall()
        assert conn.execute(
            "SELECT count(*) FROM dyno_crm.report_run_deals WHERE base_run_id IS NOT NULL"
        ).fetchone() != (0,)
        # (credit rows built on a run: a tenant where a rep's deals go to another rep)
        teams, users = team_tenant(conn)
        made_credits = [run_pipeline_coverage_batch(conn, teams, *Q1, as_of=INSIDE)]
        hand_over(conn, users[0], users[2])
        made_credits.append(run_pipeline_coverage_batch(conn, teams, *Q1, as_of=INSIDE))
        credits = (
            "SELECT run_id, principal_type, principal_id, pipeline_id, deal_ids, credit_reasons,"
            " deal_chunks FROM {} WHERE tenant_id = %(tenant_id)s"
            " ORDER BY run_id, principal_type, principal_id, pipeline_id"
        )
        credits_before = conn.execute(
            expand(credits.format("/* fragment: run_credit_rows */ AS v")), {"tenant_id": teams}
        ).fetchall()
        assert conn.execute(
            "SELECT count(*) FROM dyno_crm.report_run WHERE credit_chain IS NOT NULL"
        ).fetchone() != (0,)
    raw = connect(empty_db_url)
    engine = create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = migrate._config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0016")
    finally:
        engine.dispose()
    with psycopg.connect(empty_db_url) as conn:
        after = conn.execute(
            query.format(
                "(SELECT d.run_id, d.chunk, unnest(d.deal_ids) AS deal_id,"
                " unnest(d.deal_names) AS deal_name, unnest(d.amounts) AS amount,"
                " unnest(d.reporting_amounts) AS reporting_amount, unnest(d.flags) AS flags"
                " FROM dyno_crm.report_run_deals AS d WHERE d.tenant_id = %(tenant_id)s) AS x"
            ),
            {"tenant_id": tenant},
        ).fetchall()
        credits_after = conn.execute(
            credits.format("dyno_crm.report_run_credit"), {"tenant_id": teams}
        ).fetchall()
    assert after == before
    assert {row[0] for row in after} == set(made)
    assert credits_after == credits_before
    assert {row[0] for row in credits_after} == set(made_credits)


# --- credit rows (migration 0018) ------------------------------------------------------


def credit_chain(
    conn: psycopg.Connection[Any], run: uuid.UUID, commit: bool = True
) -> list[uuid.UUID] | None:
    found = conn.execute(
        "SELECT credit_base_run_id, credit_chain FROM dyno_crm.report_run WHERE id = %s", (run,)
    ).fetchone()
    if commit:
        conn.commit()
    assert found is not None
    assert (found[0] is None) == (found[1] is None)
    assert found[1] is None or found[1][-1] == found[0]
    return None if found[1] is None else [uuid.UUID(str(run)) for run in found[1]]


def credit_rows(conn: psycopg.Connection[Any], run: uuid.UUID) -> dict[tuple[Any, ...], bool]:
    """The credit rows a run stored itself: (principal type, id, pipeline) -> removed."""
    rows = conn.execute(
        "SELECT principal_type, principal_id, pipeline_id, removed"
        " FROM dyno_crm.report_run_credit WHERE run_id = %s",
        (run,),
    ).fetchall()
    conn.commit()
    return {tuple(row[:3]): row[3] for row in rows}


def complete_credits(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> dict[Any, Any]:
    """Per principal and bucket, the deals (and reasons) of a batch run stored complete
    on the tenant's deals as they are now (its credit rows as stored, no resolution)."""
    with conn.transaction(force_rollback=True):
        conn.execute(
            "UPDATE dyno_crm.report_run"
            " SET parameters = parameters || jsonb_build_object('mode', 'hidden')"
            " WHERE tenant_id = %s",
            (tenant,),
        )
        run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
        assert credit_chain(conn, run, commit=False) is None
        rows = conn.execute(
            "SELECT principal_type, principal_id, pipeline_id, deal_ids, credit_reasons"
            " FROM dyno_crm.report_run_credit WHERE run_id = %s",
            (run,),
        ).fetchall()
    return {tuple(r[:3]): sorted(zip(r[3], r[4], strict=True)) for r in rows}


def resolved_credits(conn: psycopg.Connection[Any], run: uuid.UUID) -> dict[Any, Any]:
    """The run's credit rows as the product's readers resolve them."""
    tenant = conn.execute("SELECT tenant_id FROM dyno_crm.report_run WHERE id = %s", (run,))
    found = conn.execute(
        expand(
            "SELECT principal_type, principal_id, pipeline_id, deal_ids, credit_reasons"
            " FROM /* fragment: run_credit_rows */ AS v WHERE v.run_id = %(run_id)s"
        ),
        {"tenant_id": tenant.fetchone()[0], "run_id": run},  # type: ignore[index]
    ).fetchall()
    conn.commit()
    return {tuple(r[:3]): sorted(zip(r[3], r[4], strict=True)) for r in found}


def team_tenant(conn: psycopg.Connection[Any], reps: int = 20) -> tuple[uuid.UUID, list[Any]]:
    """Two teams of reps, three open deals each in the period (owned by the rep and the
    rep's team): one row per rep and team."""
    crm = Crm(conn)
    tenant = crm.tenant("Credits")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    teams = [crm.group(tenant, f"Team {n}") for n in range(2)]
    users = []
    for n in range(reps):
        rep = crm.user(tenant, f"Rep {n}")
        crm.member(tenant, teams[n % 2], rep)
        users.append(rep)
        for i in range(3):
            crm.deal(tenant, pipeline, stage, Decimal(100 * n + i), expected=INSIDE, owner=rep,
                     owner_group=teams[n % 2])  # fmt: skip
    conn.commit()
    return tenant, users


def hand_over(conn: psycopg.Connection[Any], rep: uuid.UUID, to: uuid.UUID) -> None:
    """Every deal of ``rep`` goes to ``to``."""
    conn.execute(
        "UPDATE dyno_crm.deal SET owned_by_user_id = %s WHERE owned_by_user_id = %s", (to, rep)
    )
    conn.commit()


def test_a_batch_stores_only_the_credit_rows_that_changed(conn: psycopg.Connection[Any]) -> None:
    tenant, users = team_tenant(conn)
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, first) is None
    everyone = credit_rows(conn, first)
    assert len(everyone) == len(users) + 2
    # Nothing changed: the second run stores no credit row at all.
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, second) == [first]
    assert credit_rows(conn, second) == {}
    assert resolved_credits(conn, second) == resolved_credits(conn, first)
    # Rep 0 leaves every deal to rep 2 (same team): rep 0's row goes, rep 2's changes;
    # the team's keeps its deals, with other reasons or not (both are right).
    hand_over(conn, users[0], users[2])
    expected = complete_credits(conn, tenant)
    third = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, third) == [first, second]
    mine = credit_rows(conn, third)
    assert mine[("USER", users[0], None)] is True, "rep 0's row is removed"
    assert mine[("USER", users[2], None)] is False
    assert len(mine) <= 3, mine
    assert resolved_credits(conn, third) == expected
    assert ("USER", users[0], None) not in expected
    # ... and its drill-down is that of the run stored complete
    assert drilldown(conn, third) == complete_run(conn, tenant)
    # the earlier runs read as they did
    assert resolved_credits(conn, second) == resolved_credits(conn, first)
    assert ("USER", users[0], None) in resolved_credits(conn, second)


def test_credit_rows_that_changed_a_lot_are_stored_complete(
    conn: psycopg.Connection[Any],
) -> None:
    tenant, _ = team_tenant(conn)
    run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    # no deal has a rep any more: every rep's row goes
    conn.execute("UPDATE dyno_crm.deal SET owned_by_user_id = NULL WHERE tenant_id = %s", (tenant,))
    conn.commit()
    expected = complete_credits(conn, tenant)
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, second) is None
    assert not any(credit_rows(conn, second).values()), "no removed row in a complete run"
    assert resolved_credits(conn, second) == expected


def test_credit_chains_stay_at_most_31_runs_long_and_prune_keeps_them_whole(
    conn: psycopg.Connection[Any],
) -> None:
    tenant, users = team_tenant(conn)
    runs = []
    for _ in range(33):
        runs.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    assert [len(credit_chain(conn, run) or []) for run in runs] == [0, *range(1, 32), 0]
    # A change the later runs store, then prune of the first two runs.
    hand_over(conn, users[0], users[1])
    runs.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    assert credit_chain(conn, runs[-1]) == [runs[-2]]
    runs.append(run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    before = {run: resolved_credits(conn, run) for run in runs}
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '30 days'"
        " WHERE id = ANY (%s)",
        (runs[:2],),
    )
    conn.commit()
    assert prune_runs(conn, 10, tenant).runs == 2
    assert credit_chain(conn, runs[2]) is None, "the first run left is stored complete"
    assert not any(credit_rows(conn, runs[2]).values())
    for later in runs[3:32]:
        assert (credit_chain(conn, later) or [])[:1] == [runs[2]]
    for run in runs[2:]:
        assert resolved_credits(conn, run) == before[run], run
        assert drilldown(conn, run)


def test_prune_keeps_runs_whose_credit_rows_alone_build_on_a_run_that_goes(
    conn: psycopg.Connection[Any],
) -> None:
    """Every deal re-valued (every chunk stored complete) while the credit rows did
    not change: only the credits build on the first run; prune of that run stores the
    second run's credit rows complete."""
    tenant, _ = team_tenant(conn)
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    conn.execute("UPDATE dyno_crm.deal SET amount = amount + 1 WHERE tenant_id = %s", (tenant,))
    conn.commit()
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert all(row[1] is None for row in stored(conn, second)), "its chunks are complete"
    assert credit_chain(conn, second) == [first]
    before = (resolved_credits(conn, second), drilldown(conn, second))
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '30 days'"
        " WHERE id = %s",
        (first,),
    )
    conn.commit()
    assert prune_runs(conn, 10, tenant).runs == 1
    assert credit_chain(conn, second) is None
    assert (resolved_credits(conn, second), drilldown(conn, second)) == before


def test_prune_stores_complete_a_run_that_removed_rows(conn: psycopg.Connection[Any]) -> None:
    """The run that stays removed a row of its base: stored complete, the removed row
    is gone with its chain (the suite's reconciliation also refuses a complete run
    with a removed row), and the run built on it reads as before."""
    tenant, users = team_tenant(conn)
    first = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    hand_over(conn, users[0], users[2])
    second = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_rows(conn, second)[("USER", users[0], None)] is True
    third = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, third) == [first, second]
    before = {run: resolved_credits(conn, run) for run in (second, third)}
    conn.execute(
        "UPDATE dyno_crm.report_run SET generated_at = generated_at - interval '30 days'"
        " WHERE id = %s",
        (first,),
    )
    conn.commit()
    assert prune_runs(conn, 10, tenant).runs == 1
    assert credit_chain(conn, second) is None
    assert not any(credit_rows(conn, second).values()), "no removed row left"
    assert ("USER", users[0], None) not in credit_rows(conn, second)
    assert credit_chain(conn, third) == [second]
    assert {run: resolved_credits(conn, run) for run in (second, third)} == before


def test_credit_rows_build_on_the_last_run_of_their_kind(conn: psycopg.Connection[Any]) -> None:
    """A batch by pipeline between two plain ones: the second plain batch's credit rows
    build on the first plain one (by pipeline, every row would differ), while its
    chunks build on the batch just before it."""
    tenant, _ = team_tenant(conn)
    plain = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    by_pipeline = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True, as_of=INSIDE)
    assert credit_chain(conn, by_pipeline) is None
    again = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    assert credit_chain(conn, again) == [plain]
    assert credit_rows(conn, again) == {}
    assert {row[1] for row in stored(conn, again)} == {by_pipeline}
    assert resolved_credits(conn, again) == resolved_credits(conn, plain)
    assert drilldown(conn, again) == drilldown(conn, plain)
