"""Builds CRM data for tests with plain INSERTs (independent of the loader)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg


class Crm:
    """Inserts rows into dyno_crm and commits; every method returns the new id."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _insert(self, table: str, **values: Any) -> None:
        columns = ", ".join(values)
        marks = ", ".join(f"%({name})s" for name in values)
        self.conn.execute(
            f"INSERT INTO dyno_crm.{table} ({columns}) VALUES ({marks})",  # noqa: S608
            values,
        )
        self.conn.commit()

    def tenant(self, name: str = "Tenant") -> uuid.UUID:
        tenant_id = uuid.uuid4()
        self._insert("tenant", id=tenant_id, name=name)
        return tenant_id

    def user(self, tenant: uuid.UUID, name: str = "Rep", active: bool = True) -> uuid.UUID:
        user_id = uuid.uuid4()
        self._insert(
            "crm_user",
            tenant_id=tenant,
            id=user_id,
            name=name,
            email=f"{user_id.hex[:8]}@example.test",
            is_active=active,
        )
        return user_id

    def group(
        self, tenant: uuid.UUID, name: str = "Team", parent: uuid.UUID | None = None
    ) -> uuid.UUID:
        group_id = uuid.uuid4()
        self._insert("crm_group", tenant_id=tenant, id=group_id, name=name, parent_group_id=parent)
        return group_id

    def member(self, tenant: uuid.UUID, group: uuid.UUID, user: uuid.UUID) -> None:
        self._insert("group_member", tenant_id=tenant, group_id=group, user_id=user)

    def pipeline(self, tenant: uuid.UUID, name: str = "Sales") -> uuid.UUID:
        pipeline_id = uuid.uuid4()
        self._insert("pipeline", tenant_id=tenant, id=pipeline_id, name=name)
        return pipeline_id

    def stage(
        self,
        tenant: uuid.UUID,
        pipeline: uuid.UUID,
        state: str = "IN_PROGRESS",
        name: str | None = None,
    ) -> uuid.UUID:
        stage_id = uuid.uuid4()
        self._insert(
            "pipeline_stage",
            tenant_id=tenant,
            id=stage_id,
            pipeline_id=pipeline,
            name=name or state.title(),
            stage_state=state,
            probability=50,
            position=1,
        )
        return stage_id

    def deal(
        self,
        tenant: uuid.UUID,
        pipeline: uuid.UUID,
        stage: uuid.UUID,
        amount: Decimal | str | None,
        expected: dt.date | None = None,
        close: dt.date | None = None,
        owner: uuid.UUID | None = None,
        assignee: uuid.UUID | None = None,
        owner_group: uuid.UUID | None = None,
        assignee_group: uuid.UUID | None = None,
    ) -> uuid.UUID:
        deal_id = uuid.uuid4()
        self._insert(
            "deal",
            tenant_id=tenant,
            id=deal_id,
            pipeline_id=pipeline,
            stage_id=stage,
            name=f"Deal {deal_id.hex[:6]}",
            amount=Decimal(amount) if isinstance(amount, str) else amount,
            expected_close_date=expected,
            close_date=close,
            owned_by_user_id=owner,
            assigned_user_id=assignee,
            owned_by_group_id=owner_group,
            assigned_group_id=assignee_group,
        )
        return deal_id

    def target(
        self,
        tenant: uuid.UUID,
        principal_type: str,
        principal_id: uuid.UUID,
        start: dt.date,
        end: dt.date,
        amount: Decimal | str,
        pipeline: uuid.UUID | None = None,
    ) -> uuid.UUID:
        target_id = uuid.uuid4()
        self._insert(
            "sales_target",
            tenant_id=tenant,
            id=target_id,
            principal_type=principal_type,
            principal_id=principal_id,
            pipeline_id=pipeline,
            period_start=start,
            period_end=end,
            target_amount=Decimal(amount),
        )
        return target_id


def stored_runs(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """How many runs and fact rows the database holds (to prove nothing was written)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM dyno_crm.report_run),"
        " (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact)"
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0]), int(row[1])


STATES = ("NOT_STARTED", "IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED")


def random_tenant(
    conn: psycopg.Connection[Any],
    seed: int,
    deals: int = 400,
    period: tuple[dt.date, dt.date] = (dt.date(2026, 1, 1), dt.date(2026, 4, 1)),
) -> uuid.UUID:
    """A tenant full of edge cases, drawn from ``seed``: dates on and around the period
    bounds, missing dates and amounts, owner = assignee, inactive reps, several and
    zero targets, per-pipeline targets, targets for principals without any deal."""
    import random

    rng = random.Random(seed)
    crm = Crm(conn)
    tenant = crm.tenant(f"Random {seed}")
    start, end = period
    users = [crm.user(tenant, f"User {i}", active=rng.random() > 0.2) for i in range(12)]
    groups = [crm.group(tenant, f"Group {i}") for i in range(4)]
    pipelines = [crm.pipeline(tenant, f"Pipeline {i}") for i in range(3)]
    stages = {p: [crm.stage(tenant, p, state) for state in STATES] for p in pipelines}
    interesting = [
        start,
        start - dt.timedelta(days=1),
        end,
        end - dt.timedelta(days=1),
        start + dt.timedelta(days=40),
        end + dt.timedelta(days=30),
    ]

    def some_date() -> dt.date | None:
        roll = rng.random()
        if roll < 0.25:
            return None
        return (
            rng.choice(interesting)
            if roll < 0.7
            else start + dt.timedelta(days=rng.randint(-100, 200))
        )

    def maybe(pool: list[uuid.UUID], p: float) -> uuid.UUID | None:
        return rng.choice(pool) if rng.random() < p else None

    rows = []
    for n in range(deals):
        pipeline = rng.choice(pipelines)
        owner = maybe(users, 0.85)
        assignee = owner if rng.random() < 0.3 else maybe(users, 0.5)
        owner_group = maybe(groups, 0.6)
        assignee_group = owner_group if rng.random() < 0.3 else maybe(groups, 0.4)
        amount = None if rng.random() < 0.1 else Decimal(rng.randint(0, 10_000_000)) / 100
        rows.append(
            (
                tenant,
                uuid.uuid4(),
                pipeline,
                rng.choice(stages[pipeline]),
                f"D{n}",
                amount,
                some_date(),
                some_date(),
                owner,
                assignee,
                owner_group,
                assignee_group,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dyno_crm.deal (tenant_id, id, pipeline_id, stage_id, name, amount,"
            " expected_close_date, close_date, owned_by_user_id, assigned_user_id,"
            " owned_by_group_id, assigned_group_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    conn.commit()
    # Probabilities (some missing) and forecast categories on stages and deals, from
    # an RNG of their own so the rows above stay what they were for a seed.
    extra = random.Random(seed * 7919)
    categories = [None, "COMMIT", "BEST_CASE", "PIPELINE", "OMITTED"]
    for pipeline_stages in stages.values():
        for stage in pipeline_stages:
            conn.execute(
                "UPDATE dyno_crm.pipeline_stage SET probability = %s, forecast_category = %s"
                " WHERE tenant_id = %s AND id = %s",
                (
                    extra.choice([None, 0, 10, 33, 50, 75, 100]),
                    extra.choice(categories),
                    tenant,
                    stage,
                ),
            )
    # Currencies (SPEC.md §9): most deals in the tenant's own (USD, or no currency at
    # all), some in EUR (rates in force on any as_of), GBP (a rate only from June
    # 2026: NO_RATE before) and JPY (never a rate: NO_RATE).
    currencies = [None] * 14 + ["USD"] * 2 + ["EUR"] * 2 + ["GBP", "JPY"]
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE dyno_crm.deal SET forecast_category = %s, currency = %s"
            " WHERE tenant_id = %s AND id = %s",
            [
                (extra.choice(categories + [None] * 5), extra.choice(currencies), tenant, row[1])
                for row in rows
            ],
        )
        cur.executemany(
            "INSERT INTO dyno_crm.exchange_rate (tenant_id, currency, valid_from, rate)"
            " VALUES (%s, %s, %s, %s)",
            [
                (tenant, "EUR", dt.date(2024, 1, 1), Decimal("1.1")),
                (tenant, "EUR", start + dt.timedelta(days=31), Decimal("1.08315")),
                (tenant, "GBP", dt.date(2026, 6, 1), Decimal("1.25")),
            ],
        )
    conn.commit()
    periods = [
        period,
        (start, end + dt.timedelta(days=1)),
        (start - dt.timedelta(days=1), end),
        # Monthly targets inside the period, for target_match=within.
        (start, start + dt.timedelta(days=31)),
        (start + dt.timedelta(days=31), start + dt.timedelta(days=59)),
    ]
    # Teams (SPEC.md §10): a forest of the groups, and memberships, from an RNG of their
    # own. A user may be in several teams, or none.
    org = random.Random(seed * 104729)
    for n, group in enumerate(groups[1:], start=1):
        parent = org.choice([None, *groups[:n]])
        conn.execute(
            "UPDATE dyno_crm.crm_group SET parent_group_id = %s WHERE tenant_id = %s AND id = %s",
            (parent, tenant, group),
        )
    for user in users:
        for group in org.sample(groups, org.choice([0, 1, 1, 2])):
            crm.member(tenant, group, user)
    conn.commit()
    principals = [("USER", u) for u in users] + [("GROUP", g) for g in groups]
    # A target for a principal that does not exist (targets have no principal foreign key).
    principals.append(("USER", uuid.uuid4()))
    for _ in range(40):
        kind, who = rng.choice(principals)
        amount = rng.choice([Decimal(0), Decimal(rng.randint(1, 5_000_000)) / 100])
        crm.target(tenant, kind, who, *rng.choice(periods), amount, rng.choice([None, *pipelines]))
    return tenant


def bulk_tenant(
    conn: psycopg.Connection[Any],
    deals: int,
    period: tuple[dt.date, dt.date],
    users: int = 100,
    groups: int = 12,
    pipelines: int = 2,
    name: str = "Bulk",
) -> uuid.UUID:
    """A tenant of ``deals`` deals written by set-based INSERTs (thousands in well under
    a second), for tests that need a run of realistic size rather than edge cases: a
    few reps own most deals, most deals have a team too, half of them are open, half
    close in ``period`` (the rest up to half a period either side); every rep and team
    has a target for the period. The database is analyzed afterwards, as autovacuum
    would have. Drawn from a fixed seed."""
    tenant = uuid.uuid4()
    start, end = period
    days = (end - start).days
    with conn.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        cur.execute("INSERT INTO dyno_crm.tenant (id, name) VALUES (%s, %s)", (tenant, name))
        cur.execute(
            "INSERT INTO dyno_crm.crm_user (tenant_id, id, name, email, is_active)"
            " SELECT %s, gen_random_uuid(), 'Rep ' || i, 'rep' || i || '@example.test', true"
            " FROM generate_series(1, %s) AS i",
            (tenant, users),
        )
        cur.execute(
            "INSERT INTO dyno_crm.crm_group (tenant_id, id, name)"
            " SELECT %s, gen_random_uuid(), 'Team ' || i FROM generate_series(1, %s) AS i",
            (tenant, groups),
        )
        cur.execute(
            "INSERT INTO dyno_crm.group_member (tenant_id, group_id, user_id)"
            " SELECT u.tenant_id, g.id, u.id"
            " FROM (SELECT tenant_id, id, row_number() OVER (ORDER BY name) AS n"
            "       FROM dyno_crm.crm_user WHERE tenant_id = %(t)s) AS u"
            " JOIN (SELECT id, row_number() OVER (ORDER BY name) AS n"
            "       FROM dyno_crm.crm_group WHERE tenant_id = %(t)s) AS g"
            "   ON g.n = u.n %% %(groups)s + 1",
            {"t": tenant, "groups": groups},
        )
        cur.execute(
            "INSERT INTO dyno_crm.pipeline (tenant_id, id, name)"
            " SELECT %s, gen_random_uuid(), 'Pipeline ' || i FROM generate_series(1, %s) AS i",
            (tenant, pipelines),
        )
        cur.execute(
            "INSERT INTO dyno_crm.pipeline_stage"
            " (tenant_id, id, pipeline_id, name, stage_state, probability, position)"
            " SELECT p.tenant_id, gen_random_uuid(), p.id, s.state, s.state, s.probability,"
            "        s.position"
            " FROM dyno_crm.pipeline AS p"
            " CROSS JOIN (VALUES ('NOT_STARTED', 10, 1), ('IN_PROGRESS', 50, 2),"
            "                    ('DONE_SUCCESS', 100, 3), ('DONE_FAILED', 0, 4))"
            "     AS s (state, probability, position)"
            " WHERE p.tenant_id = %s",
            (tenant,),
        )
        cur.execute(
            "WITH u AS (SELECT array_agg(id ORDER BY name) AS ids FROM dyno_crm.crm_user"
            "           WHERE tenant_id = %(t)s),"
            " g AS (SELECT array_agg(id ORDER BY name) AS ids FROM dyno_crm.crm_group"
            "       WHERE tenant_id = %(t)s),"
            " s AS (SELECT array_agg(s.pipeline_id ORDER BY p.name, s.position) AS pipelines,"
            "              array_agg(s.id ORDER BY p.name, s.position) AS ids"
            "       FROM dyno_crm.pipeline_stage AS s"
            "       JOIN dyno_crm.pipeline AS p ON p.tenant_id = s.tenant_id"
            "        AND p.id = s.pipeline_id"
            "       WHERE s.tenant_id = %(t)s),"
            " r AS (SELECT n, random() AS owner, random() AS other, random() AS team,"
            "              random() AS stage, random() AS day, random() AS amount"
            "       FROM generate_series(1, %(deals)s) AS n)"
            " INSERT INTO dyno_crm.deal (tenant_id, id, pipeline_id, stage_id, name, amount,"
            "     expected_close_date, owned_by_user_id, assigned_user_id, owned_by_group_id,"
            "     assigned_group_id)"
            " SELECT %(t)s, gen_random_uuid(), s.pipelines[k.stage], s.ids[k.stage],"
            "        'Deal ' || r.n, round((r.amount * 100000)::numeric, 2),"
            "        %(start)s::date + (r.day * %(days)s * 2)::integer - %(days)s / 2,"
            "        u.ids[1 + floor(r.owner * r.owner * cardinality(u.ids))::integer],"
            "        CASE WHEN r.other < 0.3"
            "             THEN u.ids[1 + floor(r.other / 0.3 * cardinality(u.ids))::integer]"
            "        END,"
            "        CASE WHEN r.team < 0.7"
            "             THEN g.ids[1 + floor(r.team / 0.7 * cardinality(g.ids))::integer]"
            "        END,"
            "        CASE WHEN r.team > 0.9 THEN g.ids[1 + (r.n %% cardinality(g.ids))] END"
            " FROM r, u, g, s"
            " CROSS JOIN LATERAL (SELECT 1 + floor(r.stage * cardinality(s.ids))::integer"
            "     AS stage) AS k",
            {"t": tenant, "deals": deals, "start": start, "days": days},
        )
        cur.execute(
            "INSERT INTO dyno_crm.sales_target (tenant_id, id, principal_type, principal_id,"
            "     period_start, period_end, target_amount)"
            " SELECT tenant_id, gen_random_uuid(), 'USER', id, %(start)s, %(end)s, 500000"
            " FROM dyno_crm.crm_user WHERE tenant_id = %(t)s"
            " UNION ALL"
            " SELECT tenant_id, gen_random_uuid(), 'GROUP', id, %(start)s, %(end)s, 2000000"
            " FROM dyno_crm.crm_group WHERE tenant_id = %(t)s",
            {"t": tenant, "start": start, "end": end},
        )
        cur.execute("ANALYZE")
    conn.commit()
    return tenant
