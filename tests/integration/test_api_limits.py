"""The HTTP API under abuse and faults, over real HTTP (uvicorn) on a real PostgreSQL.

Heavy or stuck requests are made deterministic by holding a row lock the request
must wait for (a run's header references its tenant's row, so ``SELECT ... FOR
UPDATE`` of the tenant row holds every run of that tenant), and dropped connections
are real: ``pg_terminate_backend`` of the server's own backends.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage.config import WebSettings
from pipeline_coverage.reports.coverage import run_pipeline_coverage_batch
from pipeline_coverage.validation import MAX_PERIOD_DAYS
from pipeline_coverage.web.app import APPLICATION_NAME, create_app
from pipeline_coverage.web.limits import CONTENT_SECURITY_POLICY
from pipeline_coverage.web.problems import MAX_REPORTED_ERRORS
from tests.conftest import serving
from tests.integration.test_api import (
    PERIOD,
    body_of,
    invalid_fields,
    problem_of,
    run_count,
)
from tests.worlds import World

Json = dict[str, Any]


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for locks and pg_terminate_backend."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def serve(db_url: str, **settings: Any) -> Any:
    return serving(create_app(db_url, WebSettings(secret_key="test-secret-key", **settings)))


def api_backends(admin: psycopg.Connection[Any], waiting: bool = False) -> list[int]:
    """The server's connections to this test's database (optionally: those waiting on a lock)."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND (NOT %s OR wait_event_type = 'Lock')",
        (APPLICATION_NAME, waiting),
    ).fetchall()
    return [int(pid) for (pid,) in rows]


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def hold_tenant(db_url: str, tenant: uuid.UUID) -> psycopg.Connection[Any]:
    """A connection holding the tenant's row: the tenant's runs wait until it commits."""
    holder = psycopg.connect(db_url)
    holder.execute("SELECT 1 FROM dyno_crm.tenant WHERE id = %s FOR UPDATE", (tenant,))
    return holder


# --- request bodies ----------------------------------------------------------------


def test_a_body_over_the_limit_is_413_unread(db_url: str, world: World, conn: Any) -> None:
    limit = 64 * 1024
    with serve(db_url, max_body_bytes=limit) as base, httpx.Client(base_url=base) as client:
        # 5 MB of unknown keys to the one endpoint that needs no key.
        huge = json.dumps({f"k{i}": i for i in range(500_000)}).encode()
        assert len(huge) > 5_000_000
        for target, headers in (("/session", {}), ("/v1/coverage-runs", world.auth)):
            response = client.post(
                target,
                content=huge,
                headers={**headers, "Content-Type": "application/json", "X-Request-ID": "big-1"},
            )
            problem = problem_of(response, 413)
            assert str(limit) in problem["detail"]
            assert len(response.content) < 1000
            assert response.headers["X-Request-ID"] == "big-1"  # a refusal is traced too

        # Streamed without a Content-Length: refused as soon as it passes the limit.
        def chunks() -> Iterator[bytes]:
            yield b'{"period_start": "2026-01-01", "period_end": "2026-04-01", "x": "'
            for _ in range(100):
                yield b"y" * 8192
            yield b'"}'

        streamed = client.post(
            "/v1/coverage-runs",
            content=chunks(),
            headers={**world.auth, "Content-Type": "application/json"},
        )
        problem_of(streamed, 413)

        # At the limit, a body is read and judged as usual.
        at_limit = json.dumps({"api_key": "x" * (limit - 20)}).encode()
        at_limit += b" " * (limit - len(at_limit))
        assert len(at_limit) == limit
        assert invalid_fields(
            client.post("/session", content=at_limit, headers={"Content-Type": "application/json"})
        ) == {"api_key"}
    assert run_count(conn) == 0


def test_other_requests_are_answered_while_a_body_streams_in(db_url: str) -> None:
    with serve(db_url) as base:
        started = threading.Event()

        def slow_body() -> Iterator[bytes]:
            started.set()
            for _ in range(40):
                time.sleep(0.05)
                yield b"x" * 4096  # 160 KB in all: refused part way

        def upload() -> int:
            with httpx.Client(base_url=base, timeout=30) as uploader:
                return uploader.post("/session", content=slow_body()).status_code

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            refused = pool.submit(upload)
            assert started.wait(10)
            with httpx.Client(base_url=base, timeout=10) as client:
                for _ in range(5):
                    assert client.get("/healthz").status_code == 200
            assert refused.result() == 413


def test_validation_errors_are_capped(db_url: str) -> None:
    body = {f"unknown_{i}": i for i in range(3000)}
    with serve(db_url) as base, httpx.Client(base_url=base) as client:
        response = client.post("/session", json=body)
        problem = problem_of(response, 422)
        assert len(problem["errors"]) == MAX_REPORTED_ERRORS
        assert problem["detail"].endswith(f"(and {3001 - MAX_REPORTED_ERRORS} more)")
        assert len(response.content) < 10_000
        # A key of any length is named by at most 100 characters.
        long_key = client.post("/session", json={"k" * 50_000: 1, "api_key": "x"})
        fields = invalid_fields(long_key)
        assert all(len(field) <= 100 for field in fields)


# --- noisy neighbours ----------------------------------------------------------------


def test_one_tenants_burst_of_runs_waits_on_its_own_slots(
    db_url: str, world: World, other: World, admin: psycopg.Connection[Any], conn: Any
) -> None:
    burst = 5
    with serve(db_url, pool_size=4, tenant_runs=2, queue_seconds=2) as base:
        holder = hold_tenant(db_url, world.tenant)
        try:

            def create() -> httpx.Response:
                with httpx.Client(base_url=base, timeout=60) as client:
                    return client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth)

            with concurrent.futures.ThreadPoolExecutor(burst) as pool:
                answers = [pool.submit(create) for _ in range(burst)]
                # Two runs of Acme are in progress, stuck on its row; the rest queue.
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 2, "two runs wait")
                with httpx.Client(base_url=base, timeout=60) as client:
                    # Globex is served meanwhile: reads and a run of its own.
                    body_of(client.get("/v1/coverage-runs", headers=other.auth), 200)
                    body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=other.auth), 201)
                # Acme's queued runs give up after the bounded wait, with Retry-After,
                # while its two runs in progress still wait.
                wait_until(lambda: sum(f.done() for f in answers) == burst - 2, "refusals")
                for future in answers:
                    if future.done():
                        problem_of(future.result(), 429)
                        assert int(future.result().headers["retry-after"]) >= 1
                assert len(api_backends(admin, waiting=True)) == 2
                holder.commit()
                statuses = sorted(f.result().status_code for f in answers)
        finally:
            holder.close()
    assert statuses == [201, 201] + [429] * (burst - 2)
    assert run_count(conn, world.tenant) == 2
    assert run_count(conn, other.tenant) == 1


def test_a_full_server_answers_429_after_the_bounded_wait(
    db_url: str, world: World, other: World, admin: psycopg.Connection[Any]
) -> None:
    with serve(db_url, pool_size=1, queue_seconds=1) as base:
        holder = hold_tenant(db_url, world.tenant)
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                stuck = pool.submit(
                    lambda: httpx.post(
                        f"{base}/v1/coverage-runs", json=PERIOD, headers=world.auth, timeout=60
                    )
                )
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 1, "the run waits")
                busy = httpx.get(f"{base}/v1/coverage-runs", headers=other.auth, timeout=30)
                problem_of(busy, 429)
                assert int(busy.headers["retry-after"]) >= 1
                holder.commit()
                assert stuck.result().status_code == 201
        finally:
            holder.close()
        body_of(httpx.get(f"{base}/v1/coverage-runs", headers=other.auth, timeout=30), 200)


def test_a_run_spans_at_most_a_year(live_server: str, world: World, conn: Any) -> None:
    with httpx.Client(base_url=live_server, headers=world.auth) as client:
        for start, end in (("0001-01-01", "9999-12-31"), ("2026-01-01", "2027-01-03")):
            response = client.post(
                "/v1/coverage-runs", json={"period_start": start, "period_end": end}
            )
            assert invalid_fields(response) == {"period_end"}
            assert str(MAX_PERIOD_DAYS) in problem_of(response, 422)["detail"]
        # A leap year is the longest period a run may span.
        leap = {"period_start": "2028-01-01", "period_end": "2029-01-01"}
        body_of(client.post("/v1/coverage-runs", json=leap), 201)
    assert run_count(conn) == 1
    with pytest.raises(Exception, match="at most 366 days"):
        run_pipeline_coverage_batch(conn, world.tenant, "2026-01-01", "2027-01-03")


# --- security headers ----------------------------------------------------------------


def test_every_response_carries_the_security_headers(api: httpx.Client, world: World) -> None:
    for path, headers in (
        ("/", {}),
        ("/static/dashboard.js", {}),
        ("/healthz", {}),
        ("/v1/coverage-runs", world.auth),
        ("/v1/coverage-runs", {}),  # a 401 too
    ):
        response = api.get(path, headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
    policy = dict(
        part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";") if part.strip()
    )
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    # The interactive docs load Swagger UI from elsewhere; they still cannot be framed.
    docs = api.get("/docs")
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"


# --- one strict date parser ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["1767225600", "2026-01-01T00:00:00", "2026-01-01 00:00", "2026-1-1", "20260101", "0"],
)
def test_query_dates_are_as_strict_as_body_dates(
    api: httpx.Client, world: World, value: str
) -> None:
    listing = api.get(
        "/v1/coverage-runs",
        params={"period_start": value, "period_end": "2026-04-01"},
        headers=world.auth,
    )
    assert invalid_fields(listing) == {"period_start"}
    history = api.get(
        "/v1/coverage/history",
        params={
            "principal_type": "USER",
            "principal_id": str(world.ann),
            "period_start": value,
            "period_end": "2026-04-01",
        },
        headers=world.auth,
    )
    assert invalid_fields(history) == {"period_start"}
    body = api.post(
        "/v1/coverage-runs",
        json={"period_start": value, "period_end": "2026-04-01"},
        headers=world.auth,
    )
    assert invalid_fields(body) == {"period_start"}


def test_a_reversed_period_is_422_everywhere(api: httpx.Client, world: World) -> None:
    reversed_period = {"period_start": "2026-04-01", "period_end": "2026-01-01"}
    listing = api.get("/v1/coverage-runs", params=reversed_period, headers=world.auth)
    assert invalid_fields(listing) == {"period_end"}
    history = api.get(
        "/v1/coverage/history",
        params={**reversed_period, "principal_type": "USER", "principal_id": str(world.ann)},
        headers=world.auth,
    )
    assert invalid_fields(history) == {"period_end"}
    created = api.post("/v1/coverage-runs", json=reversed_period, headers=world.auth)
    assert invalid_fields(created) == {"period_end"}


# --- faults: the database ends the server's connections -------------------------------


def _open_pool_connections(base: str, world: World, count: int) -> None:
    """Make the server open ``count`` pooled connections (concurrent requests)."""
    with concurrent.futures.ThreadPoolExecutor(count * 2) as pool:
        list(
            pool.map(
                lambda _: httpx.get(f"{base}/v1/coverage-runs", headers=world.auth, timeout=30),
                range(count * 6),
            )
        )


def test_requests_succeed_after_the_database_ends_every_connection(
    db_url: str, world: World, admin: psycopg.Connection[Any]
) -> None:
    with serve(db_url, pool_size=4) as base, httpx.Client(base_url=base, timeout=30) as client:
        run = body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)
        _open_pool_connections(base, world, 4)
        backends = api_backends(admin)
        assert len(backends) >= 2
        terminated = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) pid",
            (backends,),
        ).fetchone()
        assert terminated == (len(backends),)
        wait_until(lambda: not set(backends) & set(api_backends(admin)), "they are gone")

        statuses = []
        for i in range(20):
            if i % 4 == 0:
                statuses.append(client.get("/readyz").status_code)
            elif i % 4 == 1:
                statuses.append(
                    client.get(
                        f"/v1/coverage-runs/{run['run_id']}?n={i}", headers=world.auth
                    ).status_code
                )
            else:
                statuses.append(client.get("/v1/coverage-runs", headers=world.auth).status_code)
        assert statuses == [200] * 20
        body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)


def test_a_read_whose_connection_dies_midway_is_retried(
    db_url: str, world: World, admin: psycopg.Connection[Any]
) -> None:
    with serve(db_url, pool_size=2) as base, httpx.Client(base_url=base, timeout=30) as client:
        body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)
        locker = psycopg.connect(db_url)
        try:
            # The list waits on the lock, past the pool's check; then its backend dies.
            locker.execute("LOCK TABLE dyno_crm.report_run IN ACCESS EXCLUSIVE MODE")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                listing = pool.submit(client.get, "/v1/coverage-runs", headers=world.auth)
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 1, "the read waits")
                [victim] = api_backends(admin, waiting=True)
                admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
                wait_until(lambda: victim not in api_backends(admin), "the backend is gone")
                locker.rollback()
                answer = listing.result(timeout=30)
        finally:
            locker.close()
        assert len(body_of(answer, 200)["items"]) == 1
