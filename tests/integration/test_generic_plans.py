"""Every read the product repeats keeps its speed on a warm connection.

psycopg 3 prepares a statement a connection runs five times, and PostgreSQL soon
gives a prepared statement a generic plan: one made without the values, which cannot
fold a ``%(x)s IS NULL OR ...`` branch away and estimates every stored array at 10
elements. Each read below runs on a tenant of thousands of deals once with every
statement planned for its values (``force_custom_plan``) and once with every
statement prepared on its first run and planned generically (``force_generic_plan``);
the generic one may not take more than 3x as long.

Not here: the writes (a batch is sent unprepared), and the single report, which runs
its statement on a generic plan by design (docs/decisions.md) and sets that itself:
its plan is checked apart, by where it reads a principal's deals.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pipeline_coverage import (
    compare_runs,
    get_run,
    list_runs,
    principal_history,
    run_deals,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.apikeys import (
    authenticate,
    authenticate_session,
    create_api_key,
    start_session,
)
from pipeline_coverage.directory import (
    fiscal_year_start_month,
    known_periods,
    list_principals,
    list_tenants,
    require_known,
    resolve_pipeline,
    resolve_principal,
)
from pipeline_coverage.history import same_point_of_quarter
from pipeline_coverage.reports.coverage import SINGLE_SETTINGS
from pipeline_coverage.sql import expand
from pipeline_coverage.store import run_deals_json
from tests.factory import bulk_tenant
from tests.plans import plan_nodes

PERIOD = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
MODES = ("force_custom_plan", "force_generic_plan")
#: How much slower a generic plan may be, and the difference always allowed (noise).
RATIO = 3.0
FLOOR_MS = 5.0
TRIES = 5

Read = Callable[[psycopg.Connection[Any]], object]


def best_ms(conn: psycopg.Connection[Any], read: Read) -> float:
    """The best of a few timings of ``read``, after a first run that prepares its
    statements (and, when forced, makes their generic plans)."""
    read(conn)
    samples = []
    for _ in range(TRIES):
        start = time.perf_counter()
        read(conn)
        samples.append((time.perf_counter() - start) * 1000)
    return min(samples)


def best_of_both(conn: psycopg.Connection[Any], a: Read, b: Read) -> tuple[float, float]:
    """``best_ms`` of two reads timed in turns, so that both see the same load."""
    a(conn)
    b(conn)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(TRIES):
        for read, times in zip((a, b), samples, strict=True):
            start = time.perf_counter()
            read(conn)
            times.append((time.perf_counter() - start) * 1000)
    return min(samples[0]), min(samples[1])


def planned(db_url: str, mode: str) -> psycopg.Connection[Any]:
    """A connection that prepares every statement on its first run, planned ``mode``."""
    conn = psycopg.connect(db_url, prepare_threshold=0)
    conn.execute(f"SET plan_cache_mode = {mode}")
    conn.commit()
    return conn


def timings(db_url: str, reads: dict[str, Read]) -> dict[str, dict[str, float]]:
    """Each read's best time per plan mode, the modes taking turns read by read."""
    conns = {mode: planned(db_url, mode) for mode in MODES}
    try:
        return {
            name: {mode: best_ms(conns[mode], read) for mode in MODES}
            for name, read in reads.items()
        }
    finally:
        for conn in conns.values():
            conn.close()


def store_other_runs(conn: psycopg.Connection[Any], tenants: int, runs: int) -> None:
    """``runs`` run headers for each of ``tenants`` other tenants (a store shared by
    many tenants, each with years of daily snapshots): a read that does not narrow
    to its tenant by an index reads them all."""
    conn.execute(
        "WITH t AS (INSERT INTO dyno_crm.tenant (id, name)"
        "           SELECT gen_random_uuid(), 'Other ' || i FROM generate_series(1, %s) AS i"
        "           RETURNING id)"
        " INSERT INTO dyno_crm.report_run"
        " (tenant_id, report_type, generated_at, period_start, period_end, parameters)"
        " SELECT t.id, 'PIPELINE_COVERAGE', now() - make_interval(hours => i),"
        "        '2026-01-01', '2026-04-01', '{\"mode\": \"batch\"}'"
        " FROM t CROSS JOIN generate_series(1, %s) AS i",
        (tenants, runs),
    )
    conn.commit()


def cursor_of(page: list[Any], at: int) -> tuple[str, uuid.UUID, uuid.UUID | None, uuid.UUID]:
    deal = page[at]
    return (deal.principal_type, deal.principal_id, deal.pipeline_id, deal.deal_id)


def test_repeated_reads_keep_their_speed_on_a_generic_plan(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    tenant = bulk_tenant(conn, 8_000, PERIOD)
    store_other_runs(conn, 200, 500)
    earlier = run_pipeline_coverage_batch(conn, tenant, *PERIOD, as_of="2026-02-01")
    conn.execute(
        "UPDATE dyno_crm.deal SET amount = amount + 1 WHERE tenant_id = %s AND name LIKE %s",
        (tenant, "Deal %7"),
    )
    conn.commit()
    batch = run_pipeline_coverage_batch(conn, tenant, *PERIOD, as_of="2026-02-15")
    by_pipeline = run_pipeline_coverage_batch(
        conn, tenant, *PERIOD, by_pipeline=True, as_of="2026-02-15"
    )
    # (the batch's credit rows as readers resolve them: it builds on the earlier run's)
    top = conn.execute(
        expand(
            "SELECT principal_type, principal_id FROM /* fragment: run_credit_rows */ AS c"
            " WHERE c.run_id = %(run_id)s ORDER BY cardinality(deal_ids) DESC LIMIT 1"
        ),
        {"tenant_id": tenant, "run_id": batch},
    ).fetchone()
    assert top is not None
    kind, who = top[0], top[1]
    single = run_pipeline_coverage_report(conn, tenant, *PERIOD, kind, who, as_of="2026-02-20")
    pipeline = conn.execute(
        "SELECT id, name FROM dyno_crm.pipeline WHERE tenant_id = %s ORDER BY name LIMIT 1",
        (tenant,),
    ).fetchone()
    assert pipeline is not None
    _, secret = create_api_key(conn, tenant)
    session = start_session(conn, secret)
    assert session is not None
    conn.execute("ANALYZE")  # as autovacuum would have, after the runs
    conn.commit()

    whole = run_deals(conn, batch, tenant, limit=100_000)
    assert len(whole) > 5_000  # the drill-down of a run of thousands of deals
    middle = cursor_of(whole, len(whole) // 2)
    mine = run_deals(conn, batch, tenant, principal_type=kind, principal_id=who, limit=100_000)
    assert len(mine) > 200
    mine_middle = cursor_of(mine, len(mine) // 2)
    principal = {"principal_type": kind, "principal_id": who}
    rep = list_principals(conn, tenant, "USER")[0]

    reads: dict[str, Read] = {
        "run_deals: first page of the run": lambda c: run_deals(c, batch, tenant, limit=1001),
        "run_deals: a middle page of the run": lambda c: run_deals(
            c, batch, tenant, after=middle, limit=1001
        ),
        "run_deals: first page of a by-pipeline run": lambda c: run_deals(
            c, by_pipeline, tenant, limit=1001
        ),
        "run_deals: one principal, first page": lambda c: run_deals(
            c, batch, tenant, **principal, limit=200
        ),
        "run_deals: one principal, a middle page": lambda c: run_deals(
            c, batch, tenant, **principal, after=mine_middle, limit=200
        ),
        "run_deals: one principal, every deal": lambda c: run_deals(c, batch, tenant, **principal),
        "run_deals: a single run": lambda c: run_deals(c, single, tenant, limit=1001),
        "run_deals_json: a middle page of the run": lambda c: run_deals_json(
            c, batch, tenant, after=middle, limit=1001
        ),
        "run_deals_json: one principal, first page": lambda c: run_deals_json(
            c, batch, tenant, **principal, limit=200
        ),
        "get_run: a batch": lambda c: get_run(c, batch, tenant),
        "get_run: a by-pipeline batch": lambda c: get_run(c, by_pipeline, tenant),
        "get_run: a single run": lambda c: get_run(c, single, tenant),
        "list_runs: the tenant's": lambda c: list_runs(c, tenant),
        "list_runs: a period's batches, after a cursor": lambda c: list_runs(
            c,
            tenant,
            period=PERIOD,
            mode="batch",
            before=(dt.datetime.now(dt.UTC), uuid.UUID(int=0)),
        ),
        "list_runs: every tenant's": lambda c: list_runs(c),
        "principal_history: every run": lambda c: principal_history(c, tenant, kind, who, *PERIOD),
        "principal_history: each day, one pipeline": lambda c: principal_history(
            c, tenant, kind, who, *PERIOD, pipeline_id=pipeline[0], granularity="day"
        ),
        "same_point_of_quarter": lambda c: same_point_of_quarter(
            c, tenant, kind, who, as_of="2026-02-20", quarters=4
        ),
        "compare_runs: the whole runs": lambda c: compare_runs(c, earlier, batch, tenant),
        "compare_runs: one principal, with deals": lambda c: compare_runs(
            c, earlier, batch, tenant, **principal, deals=True
        ),
        "compare_runs: a single run with a batch": lambda c: compare_runs(
            c, batch, single, tenant, **principal, deals=True
        ),
        "known_periods": lambda c: known_periods(c, tenant, dt.date(2026, 2, 20)),
        "fiscal_year_start_month": lambda c: fiscal_year_start_month(c, tenant),
        "list_tenants": list_tenants,
        "list_principals": lambda c: list_principals(c, tenant),
        "resolve_principal: by name": lambda c: resolve_principal(c, tenant, rep.name, "USER"),
        "resolve_pipeline: by name": lambda c: resolve_pipeline(c, tenant, pipeline[1]),
        "require_known": lambda c: require_known(c, tenant, (kind, who), pipeline[0]),
        "authenticate: an API key": lambda c: authenticate(c, secret),
        "authenticate_session": lambda c: authenticate_session(c, tenant, session.id),
    }
    # The reads give the same answers either way (a plan is never a result).
    with planned(db_url, "force_generic_plan") as generic:
        same = ("run_deals: a middle page of the run", "run_deals: one principal, every deal",
                "run_deals_json: a middle page of the run", "list_runs: the tenant's")  # fmt: skip
        for name in same:
            assert reads[name](generic) == reads[name](conn)

    measured = timings(db_url, reads)
    table = "\n".join(
        f"  {name}: custom {ms['force_custom_plan']:.1f} ms,"
        f" generic {ms['force_generic_plan']:.1f} ms"
        for name, ms in measured.items()
    )
    slow = [
        name
        for name, ms in measured.items()
        if ms["force_generic_plan"] > RATIO * ms["force_custom_plan"]
        and ms["force_generic_plan"] - ms["force_custom_plan"] > FLOOR_MS
    ]
    assert not slow, f"slower than {RATIO}x on a generic plan: {slow}\n{table}"


@pytest.mark.parametrize("mode", MODES)
def test_a_drill_down_page_costs_the_same_whatever_the_runs_size(
    conn: psycopg.Connection[Any], db_url: str, mode: str
) -> None:
    """A page of a run's drill-down (the first, one in the middle, a principal's) of a
    run four times the size, with four times the rows, costs about the same, with
    either plan: a page used to read the run's deals once per row of the run (16x)."""
    runs = {}
    for size in (1, 4):
        tenant = bulk_tenant(conn, 2_000 * size, PERIOD, users=25 * size, groups=3 * size)
        runs[size] = (tenant, run_pipeline_coverage_batch(conn, tenant, *PERIOD))
    conn.execute("ANALYZE")
    conn.commit()

    def pages(size: int) -> dict[str, Read]:
        tenant, batch = runs[size]
        whole = run_deals(conn, batch, tenant)
        assert len(whole) > 2_000 * size  # (each deal credited to one row or more)
        middle = cursor_of(whole, len(whole) // 2)
        kind, who = whole[len(whole) // 2].principal_type, whole[len(whole) // 2].principal_id
        return {
            "first page": lambda c: run_deals(c, batch, tenant, limit=501),
            "a middle page": lambda c: run_deals(c, batch, tenant, after=middle, limit=501),
            "a principal's first page": lambda c: run_deals(
                c, batch, tenant, principal_type=kind, principal_id=who, limit=20
            ),
        }

    small, large = pages(1), pages(4)
    with planned(db_url, mode) as c:
        costs = {name: best_of_both(c, small[name], large[name]) for name in small}
    slow = {name: ms for name, ms in costs.items() if ms[1] > 2 * ms[0] + 2 * FLOOR_MS}
    assert not slow, f"(small run, run 4x its size), ms: {costs}"


def test_one_tenants_list_of_runs_is_the_whole_statements(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """list_runs sends one tenant's list without its every-tenant branch; the whole
    statement, as written, lists the same runs."""
    from pipeline_coverage import store
    from pipeline_coverage.sql import query

    tenant = bulk_tenant(conn, 500, PERIOD)
    other = bulk_tenant(conn, 500, PERIOD, name="Other")
    for who in (tenant, other, tenant):
        run_pipeline_coverage_batch(conn, who, *PERIOD, as_of="2026-02-15")
    run_pipeline_coverage_batch(conn, tenant, *PERIOD, by_pipeline=True, as_of="2026-02-16")
    asks: list[dict[str, Any]] = [
        {"tenant_id": tenant},
        {"tenant_id": tenant, "limit": 2},
        {"tenant_id": tenant, "mode": "batch", "period": PERIOD},
        {"tenant_id": other},
        {},
    ]
    specialized = [list_runs(conn, **ask) for ask in asks]
    monkeypatch.setattr(store, "specialized_query", lambda file, name, **flags: query(file, name))
    assert [list_runs(conn, **ask) for ask in asks] == specialized
    assert [len(runs) for runs in specialized] == [3, 2, 3, 1, 4]


#: The indexes that find one principal's deals; a single report reads ``deal`` by no other.
PRINCIPAL_INDEXES = {
    "ix_deal_owned_by_user_close", "ix_deal_assigned_user_close",
    "ix_deal_owned_by_group_close", "ix_deal_assigned_group_close",
}  # fmt: skip


@pytest.mark.parametrize(("kind", "rollup"), [("USER", False), ("GROUP", False), ("GROUP", True)])
def test_a_single_reports_generic_plan_reads_only_its_principals_deals(
    conn: psycopg.Connection[Any], kind: str, rollup: bool
) -> None:
    """The single report's prepared statement, on its generic plan, finds the deals of
    the period and of the win rate's year through the principal's owner/assignee
    indexes only. Without values, the planner guesses a year of the tenant's closed
    deals at 0.5% of its rows; where the table holds fewer than ~400 teams (or reps), a
    principal's indexes are guessed at more, and the plan read the tenant's year by its
    closed-on index for every team: 750 ms against 30 on a tenant of a million deals.
    A rolled-up team's deals (its own, its members', the teams' below it and theirs)
    come by the same indexes, from arrays of those teams and reps (756 ms against 39:
    `IN (SELECT ...)` had left only the tenant's dates)."""
    # (A rolled-up team's arrays are guessed at ten teams or reps each: among 40 reps
    # that is a quarter of the table, which a sequential scan reads as cheaply.)
    users, groups = (400, 60) if rollup else (40, 6)
    tenant = bulk_tenant(conn, 6_000, PERIOD, users=users, groups=groups)
    who = list_principals(conn, tenant, kind)[0].id
    if rollup:  # a team below it
        conn.execute(
            "UPDATE dyno_crm.crm_group SET parent_group_id = %s WHERE tenant_id = %s AND id = %s",
            (who, tenant, list_principals(conn, tenant, kind)[1].id),
        )
        conn.commit()
    run = run_pipeline_coverage_report(conn, tenant, *PERIOD, kind, who, rollup=rollup)
    assert get_run(conn, run, tenant).rows[0].principal_id == who
    # The run prepared its statement on this connection; its generic plan, under the
    # run's settings (the values do not enter a generic plan):
    prepared = conn.execute(
        "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements"
        " WHERE statement LIKE %s",
        ("%INSERT INTO dyno_crm.report_pipeline_coverage_fact%",),
    ).fetchall()
    assert len(prepared) == 1, prepared
    name, count = prepared[0]
    with conn.transaction():
        for setting, value in SINGLE_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, true)", (setting, value))
        nulls = ", ".join(["NULL"] * count)
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})").fetchone()
    assert plan is not None
    nodes = list(plan_nodes(plan[0] if isinstance(plan[0], list) else json.loads(plan[0])))
    # Each read of ``deal`` with the indexes it goes by (a bitmap scan's are below it;
    # a sequential scan's: none).
    reads = [
        [m.get("Index Name") for m in plan_nodes(n.get("Plans", [])) if "Index Name" in m]
        if n["Node Type"] == "Bitmap Heap Scan" else [n.get("Index Name")]
        for n in nodes if n.get("Relation Name") == "deal"
    ]  # fmt: skip
    assert len(reads) == 2, reads  # the period's deals and the win rate's window
    for indexes in reads:
        assert indexes, reads
        assert set(indexes) <= PRINCIPAL_INDEXES, reads
        owner = "ix_deal_owned_by_user_close" if kind == "USER" else "ix_deal_owned_by_group_close"
        assert owner in indexes, reads
