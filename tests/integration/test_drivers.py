"""Both drivers, every transaction state: one unit of work, nothing left behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import psycopg2
import pytest

from pipeline_coverage import (
    InputError,
    NotFoundError,
    get_run,
    list_runs,
    run_deals,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.db.connection import one_read, prepares, unit_of_work
from pipeline_coverage.errors import PipelineCoverageError
from tests.factory import Crm

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))


class Setup:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        crm = Crm(conn)
        self.tenant = crm.tenant("Acme")
        self.rep = crm.user(self.tenant, "Rep")
        pipeline = crm.pipeline(self.tenant)
        stage = crm.stage(self.tenant, pipeline)
        crm.deal(
            self.tenant, pipeline, stage, "123.45", expected=dt.date(2026, 2, 1), owner=self.rep
        )
        crm.target(self.tenant, "USER", self.rep, *Q1, "100.00")


@pytest.fixture
def setup(conn: psycopg.Connection[Any]) -> Setup:
    return Setup(conn)


@pytest.fixture(params=["psycopg", "psycopg2"])
def driver_conn(request: pytest.FixtureRequest, db_url: str) -> Iterator[Any]:
    """A non-autocommit connection of either driver."""
    if request.param == "psycopg":
        connection: Any = psycopg.connect(db_url)
    else:
        connection = psycopg2.connect(db_url)
    try:
        yield connection
    finally:
        connection.close()


def runs_seen_from_outside(db_url: str) -> int:
    with psycopg.connect(db_url) as other:
        row = other.execute("SELECT count(*) FROM dyno_crm.report_run").fetchone()
        assert row is not None
        return int(row[0])


def test_idle_connection_commits_the_run(driver_conn: Any, setup: Setup, db_url: str) -> None:
    run_id = run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    assert isinstance(run_id, uuid.UUID)
    assert runs_seen_from_outside(db_url) == 1
    stored = get_run(driver_conn, run_id)
    assert stored.rows[0].open_amount == Decimal("123.45")
    assert stored.rows[0].coverage_ratio == Decimal("1.2345")
    assert stored.rows[0].principal_id == setup.rep


@pytest.mark.parametrize("autocommit", [True, False])
def test_both_drivers_in_both_commit_modes(
    driver_conn: Any, setup: Setup, db_url: str, autocommit: bool
) -> None:
    driver_conn.autocommit = autocommit
    single = run_pipeline_coverage_report(
        driver_conn, str(setup.tenant), "2026-01-01", "2026-04-01", "USER", str(setup.rep)
    )
    batch = run_pipeline_coverage_batch(driver_conn, setup.tenant, *Q1)
    assert runs_seen_from_outside(db_url) == 2
    assert {r.run_id for r in list_runs(driver_conn, setup.tenant)} == {single, batch}
    assert int(driver_conn.info.transaction_status) == 0  # idle: nothing left open


def test_failure_leaves_nothing_and_connection_usable(
    driver_conn: Any, setup: Setup, db_url: str
) -> None:
    with pytest.raises(NotFoundError):
        run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", uuid.uuid4())
    assert runs_seen_from_outside(db_url) == 0
    # The same connection works straight away.
    run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    assert runs_seen_from_outside(db_url) == 1


def test_failure_inside_the_statement_rolls_back_the_header(
    driver_conn: Any, setup: Setup, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    # Make the fact insert fail after the header was written (a CHECK the data cannot meet).
    conn.execute(
        "ALTER TABLE dyno_crm.report_pipeline_coverage_fact"
        " ADD CONSTRAINT ck_test_fail CHECK (open_amount < 0)"
    )
    conn.commit()
    with pytest.raises(Exception, match="ck_test_fail"):
        run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    assert runs_seen_from_outside(db_url) == 0
    assert int(driver_conn.info.transaction_status) == 0


def test_inside_callers_transaction_the_caller_commits(
    driver_conn: Any, setup: Setup, db_url: str
) -> None:
    cur = driver_conn.cursor()
    cur.execute("UPDATE dyno_crm.tenant SET name = 'Renamed' WHERE id = %s", (str(setup.tenant),))
    run_id = run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    assert runs_seen_from_outside(db_url) == 0, "the caller's transaction is not ours to commit"
    # A failing call inside the caller's transaction undoes only its own work.
    with pytest.raises(NotFoundError):
        run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "GROUP", setup.rep)
    cur.execute("SELECT name FROM dyno_crm.tenant WHERE id = %s", (str(setup.tenant),))
    assert cur.fetchone()[0] == "Renamed"
    driver_conn.commit()
    assert runs_seen_from_outside(db_url) == 1
    assert get_run(driver_conn, run_id).tenant_name == "Renamed"


def test_failed_transaction_is_refused_clearly(driver_conn: Any, setup: Setup) -> None:
    cur = driver_conn.cursor()
    with pytest.raises(Exception, match="division by zero"):
        cur.execute("SELECT 1/0")
    with pytest.raises(InputError, match="failed transaction"):
        run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    driver_conn.rollback()
    run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)


def test_psycopg3_transaction_block_is_respected(
    conn: psycopg.Connection[Any], setup: Setup, db_url: str
) -> None:
    with conn.transaction():
        run_pipeline_coverage_report(conn, setup.tenant, *Q1, "USER", setup.rep)
        assert runs_seen_from_outside(db_url) == 0
    assert runs_seen_from_outside(db_url) == 1


def test_batch_runs_at_repeatable_read(
    driver_conn: Any, setup: Setup, conn: psycopg.Connection[Any]
) -> None:
    # A statement trigger records the isolation level the fact rows were written under.
    conn.execute("CREATE TABLE public.isolation_seen (level text)")
    conn.execute(
        "CREATE FUNCTION public.record_isolation() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.isolation_seen"
        " VALUES (current_setting('transaction_isolation')); RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER record_isolation AFTER INSERT ON dyno_crm.report_pipeline_coverage_fact"
        " FOR EACH STATEMENT EXECUTE FUNCTION public.record_isolation()"
    )
    conn.commit()
    run_pipeline_coverage_batch(driver_conn, setup.tenant, *Q1)
    driver_conn.autocommit = True
    run_pipeline_coverage_batch(driver_conn, setup.tenant, *Q1)
    rows = conn.execute("SELECT level FROM public.isolation_seen").fetchall()
    assert rows == [("repeatable read",), ("repeatable read",)]


def test_inside_callers_transaction_the_run_settings_are_put_back(
    driver_conn: Any, setup: Setup
) -> None:
    """A run sets work_mem, jit and enable_sort for its statement; in the caller's
    transaction, the caller's own statements after it plan as before."""
    shown = (
        "SELECT current_setting('work_mem'), current_setting('plan_cache_mode'),"
        " current_setting('jit'), current_setting('enable_sort')"
    )
    cur = driver_conn.cursor()
    cur.execute(shown)  # this opens the caller's transaction
    before = cur.fetchone()
    run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep)
    run_pipeline_coverage_batch(driver_conn, setup.tenant, *Q1)
    cur.execute(shown)
    assert cur.fetchone() == before
    assert before[3] == "on"
    driver_conn.rollback()


@pytest.mark.parametrize("prepare_threshold", [5, 0])
def test_a_batch_is_never_prepared_and_a_single_report_once_on_a_generic_plan(
    db_url: str, setup: Setup, prepare_threshold: int
) -> None:
    """psycopg 3 prepares a statement run often enough on one connection (at once with
    prepare_threshold 0), and a prepared statement soon gets a generic plan, which
    cannot fold a batch statement's per-run branches away: a batch's statement is
    always sent unprepared. A single report's statement (specialized for one
    principal) is prepared once per connection, and every run uses its generic plan."""
    with psycopg.connect(db_url, prepare_threshold=prepare_threshold) as connection:
        for _ in range(7):
            run_pipeline_coverage_report(connection, setup.tenant, *Q1, "USER", setup.rep)
            run_pipeline_coverage_batch(connection, setup.tenant, *Q1)
        prepared = connection.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%%INSERT INTO dyno_crm.report_pipeline_coverage_fact%%'"
            " AND statement NOT LIKE '%%pg_prepared_statements%%'"
        ).fetchall()
        connection.rollback()
    # one prepared statement, run 7 times: the single reports' (a prepared batch would
    # be a second one), each time on the generic plan
    assert [(generic, custom) for _, generic, custom in prepared] == [(7, 0)]


def test_a_connection_that_does_not_prepare_is_not_made_to(db_url: str, setup: Setup) -> None:
    """A caller who turned preparing off (prepare_threshold None, e.g. behind a pooler
    that cannot keep prepared statements) gets no prepared statement, and no generic
    plan either (forced on an unprepared statement, it would be re-made at every run):
    its single reports are planned for their values, as psycopg2's are."""
    with psycopg.connect(db_url, prepare_threshold=None) as connection:
        ids = [
            run_pipeline_coverage_report(connection, setup.tenant, *Q1, "USER", setup.rep)
            for _ in range(7)
        ]
        prepared = connection.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert not prepares(connection.cursor())
        connection.rollback()
        rows = [get_run(connection, run_id).rows for run_id in ids]
    assert prepared == (0,)
    assert rows[0][0].open_amount == Decimal("123.45")
    assert all(r == rows[0] for r in rows)
    with psycopg.connect(db_url) as default, psycopg2.connect(db_url) as other:
        assert prepares(default.cursor())
        assert not prepares(other.cursor())


def test_the_drill_down_reads_the_same_with_either_driver(
    driver_conn: Any, setup: Setup, conn: psycopg.Connection[Any]
) -> None:
    """psycopg2 returns uuids as text: the drill-down's rows are the same typed values
    with either driver."""
    run_id = run_pipeline_coverage_report(conn, setup.tenant, *Q1, "USER", setup.rep)
    [deal] = run_deals(driver_conn, run_id, setup.tenant)
    assert deal == run_deals(conn, run_id, setup.tenant)[0]
    assert isinstance(deal.principal_id, uuid.UUID)
    assert isinstance(deal.deal_id, uuid.UUID)
    assert isinstance(deal.stage_id, uuid.UUID)
    assert deal.principal_id == setup.rep
    assert deal.pipeline_id is None
    assert deal.flags == ("PAST_DUE",)  # (its close date is behind today)
    assert deal.reporting_amount == Decimal("123.45")


# --- one_read: the API's key check, once per request --------------------------------

LONE = "SELECT statement_timestamp() = transaction_timestamp() AS alone"


def test_one_read_on_an_idle_connection_runs_without_a_transaction(driver_conn: Any) -> None:
    """No BEGIN and COMMIT around it: the statement is its transaction's only one (its
    timestamp is the transaction's), and the connection is left as it was found."""
    with one_read(driver_conn) as cur:
        cur.execute(LONE)
        assert cur.fetchone()[0] is True
    assert driver_conn.autocommit is False
    assert driver_conn.info.transaction_status == 0  # idle
    # A unit of work for comparison: BEGIN, then the statement.
    with unit_of_work(driver_conn) as cur:
        cur.execute("SELECT pg_sleep(0.01)")
        cur.execute(LONE)
        assert cur.fetchone()[0] is False


def test_one_read_inside_the_callers_transaction_reads_within_it(
    driver_conn: Any, setup: Setup
) -> None:
    cur = driver_conn.cursor()
    cur.execute("UPDATE dyno_crm.tenant SET name = 'renamed, not committed' WHERE id = %s",
                (str(setup.tenant),))  # fmt: skip
    with one_read(driver_conn) as inner:
        inner.execute("SELECT name FROM dyno_crm.tenant WHERE id = %s", (str(setup.tenant),))
        assert inner.fetchone()[0] == "renamed, not committed"
    assert driver_conn.info.transaction_status == 2  # still the caller's transaction
    driver_conn.rollback()


def test_one_read_that_fails_is_the_packages_error_and_leaves_the_connection_usable(
    driver_conn: Any,
) -> None:
    with pytest.raises(PipelineCoverageError), one_read(driver_conn) as cur:
        cur.execute("SELECT 1 / 0")
    assert driver_conn.autocommit is False
    assert driver_conn.info.transaction_status == 0
    with one_read(driver_conn) as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone()[0] == 2


# --- the API's key check on an asyncio connection (the event loop) ---------------------


def test_async_key_checks_agree_with_the_sync_ones(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    from pipeline_coverage.apikeys import (
        authenticate,
        authenticate_async,
        authenticate_session,
        authenticate_session_async,
        create_api_key,
        end_session,
        revoke_api_key,
        start_session,
    )

    tenant = Crm(conn).tenant('Key\'s "tenant"')
    _, key = create_api_key(conn, tenant, "live")
    revoked_key, revoked = create_api_key(conn, tenant, "revoked")
    revoke_api_key(conn, revoked_key.id, tenant)
    session = start_session(conn, key)
    assert session is not None
    ended = start_session(conn, key)
    assert ended is not None
    end_session(conn, tenant, ended.id)
    conn.commit()
    wrong = key[:-1] + ("x" if key[-1] != "x" else "y")
    keys = [key, revoked, wrong, "pcov_not-a-key", ""]

    async def checks() -> tuple[list[Any], list[Any]]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            by_key = [await authenticate_async(aconn, k) for k in keys]
            by_session = [await authenticate_session_async(aconn, tenant, s.id)
                          for s in (session, ended)]  # fmt: skip
        return by_key, by_session

    by_key, by_session = asyncio.run(checks())
    assert by_key == [authenticate(conn, k) for k in keys]
    assert by_key[0] is not None
    assert by_key[0].tenant_id == tenant
    assert by_key[0].tenant_name == 'Key\'s "tenant"'
    assert by_key[1:] == [None] * 4
    assert by_session == [authenticate_session(conn, tenant, s.id) for s in (session, ended)]
    assert by_session[0] == by_key[0]
    assert by_session[1] is None


def test_an_async_read_whose_connection_died_is_connection_lost(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    from pipeline_coverage.db.connection import read_async
    from pipeline_coverage.errors import ConnectionLostError

    async def read_after_its_backend_ends() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            assert await read_async(aconn, "SELECT 1 AS one", {}) == [{"one": 1}]
            conn.execute("SELECT pg_terminate_backend(%s)", (aconn.info.backend_pid,))
            conn.commit()
            with pytest.raises(ConnectionLostError):
                await read_async(aconn, "SELECT 1 AS one", {})
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            with pytest.raises(PipelineCoverageError) as failed:
                await read_async(aconn, "SELECT 1 / 0", {})
            assert not isinstance(failed.value, ConnectionLostError)
            assert await read_async(aconn, "SELECT 2 AS two", {}) == [{"two": 2}]

    asyncio.run(read_after_its_backend_ends())


# --- a drill-down page in one round trip (psycopg 3's pipeline mode) --------------------


def _frontend_and_backend(conn: psycopg.Connection[Any], read: Any) -> tuple[Any, list[str]]:
    """``read()``'s result and the protocol messages it exchanged ('F:Sync', 'B:DataRow',
    ...), from libpq's trace of the connection."""
    import tempfile

    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            result = read()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        lines = [line.split("\t") for line in trace.read().splitlines()]
    messages = [f"{p[0]}:{p[2].split(' ')[0]}" for p in lines if len(p) > 2 and p[0] in "FB"]
    return result, messages


def test_a_drill_down_page_is_one_round_trip_and_reads_what_one_statement_at_a_time_does(
    conn: psycopg.Connection[Any], setup: Setup
) -> None:
    from pipeline_coverage.store import run_deals_json

    run = run_pipeline_coverage_batch(conn, setup.tenant, *Q1)
    conn.commit()
    for read in (run_deals, run_deals_json):
        page, messages = _frontend_and_backend(conn, lambda r=read: r(conn, run, setup.tenant))
        # Everything is sent before anything comes back, and the client waits once.
        first_answer = next(i for i, m in enumerate(messages) if m.startswith("B:"))
        assert all(m.startswith("B:") for m in messages[first_answer:])
        assert messages.count("F:Sync") == 1
        assert messages.count("B:ReadyForQuery") == 1
        assert conn.info.transaction_status == 0
        assert conn.autocommit is False
        # The same page as the statement-at-a-time read (no tenant given: it looks the
        # run's tenant up first), which waits for each of its statements.
        alone, theirs = _frontend_and_backend(conn, lambda r=read: r(conn, run))
        assert theirs.count("B:ReadyForQuery") >= 4
        assert page == alone
        assert len(page) == 1  # the one deal, credited to its owner


def test_a_pipelined_read_that_fails_is_the_packages_error_and_leaves_the_connection_idle(
    conn: psycopg.Connection[Any], setup: Setup
) -> None:
    from pipeline_coverage.db.connection import pipelined_read

    run = run_pipeline_coverage_batch(conn, setup.tenant, *Q1)
    stranger = Crm(conn).tenant("Stranger")
    conn.commit()
    with pytest.raises(NotFoundError):  # another tenant's run, found missing in the batch
        run_deals(conn, run, stranger)
    assert conn.info.transaction_status == 0
    with pytest.raises(PipelineCoverageError), pipelined_read(conn) as cursor:
        cursor().execute("SELECT 1 / 0")
    assert conn.info.transaction_status == 0
    assert conn.autocommit is False
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_drill_down_keeps_the_callers_isolation_level(
    conn: psycopg.Connection[Any], setup: Setup
) -> None:
    """A connection set to REPEATABLE READ (or read only) reads statement at a time in
    a transaction of that level, not in the pipeline's plain BEGIN."""
    run = run_pipeline_coverage_batch(conn, setup.tenant, *Q1)
    conn.commit()
    expected = run_deals(conn, run, setup.tenant)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        page, messages = _frontend_and_backend(conn, lambda: run_deals(conn, run, setup.tenant))
    finally:
        conn.isolation_level = None
    assert page == expected
    assert messages.count("B:ReadyForQuery") >= 4  # a statement at a time
    assert conn.info.transaction_status == 0


def test_a_single_reports_header_settings_and_statement_go_in_one_round_trip(
    conn: psycopg.Connection[Any], setup: Setup, db_url: str
) -> None:
    """On psycopg 3 a single report sends its scope check with the calibration's fits,
    then its header, its settings and its statement, each group at once (pipeline
    mode): one Sync for each, where a statement at a time takes one each. A connection
    that does not prepare sends the last three one at a time; both runs store the same
    row."""
    conn.commit()
    as_of = dt.date(2026, 2, 1)  # (inside the period: the fits are asked for)

    def report(connection: psycopg.Connection[Any]) -> uuid.UUID:
        return run_pipeline_coverage_report(
            connection, setup.tenant, *Q1, "USER", setup.rep, as_of=as_of
        )

    run, messages = _frontend_and_backend(conn, lambda: report(conn))
    assert conn.info.transaction_status == 0
    # The statements sent between one Sync of the client's and the next.
    syncs = [i for i, m in enumerate(messages) if m == "F:Sync"]
    batches = [messages[a + 1 : b] for a, b in zip([-1, *syncs], syncs, strict=False)]
    executes = [sum(m == "F:Execute" for m in batch) for batch in batches]
    # (the others: psycopg's BEGIN, which waits for its answer, and the COMMIT)
    assert (executes.count(2), executes.count(3)) == (1, 1), messages
    assert all(n <= 1 for n in executes if n not in (2, 3)), messages
    with psycopg.connect(db_url, prepare_threshold=None) as plain:
        alone, theirs = _frontend_and_backend(plain, lambda: report(plain))
        assert theirs.count("F:Sync") > messages.count("F:Sync")
    assert get_run(conn, run, setup.tenant).rows == get_run(conn, alone, setup.tenant).rows


def test_an_unknown_principal_after_the_fits_were_asked_for_leaves_nothing(
    driver_conn: Any, setup: Setup, db_url: str
) -> None:
    """The scope check fails after the calibration's fits were sent with it (as_of in
    the period): not found, nothing stored, the connection idle and usable, on either
    driver; inside the caller's transaction, the caller's work is kept."""
    as_of = dt.date(2026, 2, 1)
    with pytest.raises(NotFoundError):
        run_pipeline_coverage_report(
            driver_conn, setup.tenant, *Q1, "USER", uuid.uuid4(), as_of=as_of
        )
    assert int(driver_conn.info.transaction_status) == 0
    assert runs_seen_from_outside(db_url) == 0
    cur = driver_conn.cursor()
    cur.execute("UPDATE dyno_crm.tenant SET name = 'Renamed' WHERE id = %s", (str(setup.tenant),))
    with pytest.raises(NotFoundError):
        run_pipeline_coverage_report(
            driver_conn, setup.tenant, *Q1, "GROUP", setup.rep, as_of=as_of
        )
    run_pipeline_coverage_report(driver_conn, setup.tenant, *Q1, "USER", setup.rep, as_of=as_of)
    driver_conn.commit()
    assert runs_seen_from_outside(db_url) == 1
    cur.execute("SELECT name FROM dyno_crm.tenant WHERE id = %s", (str(setup.tenant),))
    assert cur.fetchone()[0] == "Renamed"
