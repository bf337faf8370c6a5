"""The HTTP server's safety rules, over real HTTP on a real PostgreSQL: what a client
that goes away, a page of another origin, a shared cache or a lost connection after
a commit can and cannot do."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import store
from pipeline_coverage.apikeys import MAX_SESSIONS_PER_KEY
from pipeline_coverage.reports import coverage
from pipeline_coverage.web import api as api_module
from pipeline_coverage.web.access import CLIENT_CLOSED
from pipeline_coverage.web.app import SESSION_COOKIE
from tests.integration.test_api import PERIOD, body_of, problem_of, run_count, single
from tests.integration.test_api_limits import admin as admin  # the fixture
from tests.integration.test_api_limits import serve, wait_until
from tests.worlds import World

Json = dict[str, Any]


class Lines(logging.Handler):
    """Keeps what a logger writes, tracebacks included."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def server_logs() -> Iterator[Lines]:
    """Everything the app and uvicorn log while the test runs."""
    lines = Lines()
    lines.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    names = ("pipeline_coverage.access", "pipeline_coverage.web", "uvicorn.error", "uvicorn")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(lines)
            logger.setLevel(level)


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


# --- a client that goes away --------------------------------------------------------


def test_a_client_leaving_mid_body_is_logged_as_a_disconnect_without_a_traceback(
    db_url: str, world: World, server_logs: Lines
) -> None:
    with serve(db_url) as base:
        for n in range(5):
            with socket.create_connection(("127.0.0.1", _port(base))) as client:
                client.sendall(
                    b"POST /v1/coverage-runs HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + world.key.encode() + b"\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
                    b"X-Request-ID: gone-" + str(n).encode() + b"\r\n\r\n"
                    b'{"period_start": '
                )
        wait_until(
            lambda: sum('"gone-' in line for line in server_logs.lines) == 5,
            "every disconnect is logged",
        )
        # The server is fine afterwards.
        assert httpx.get(f"{base}/healthz").status_code == 200
    logged = [line for line in server_logs.lines if '"gone-' in line]
    assert all(f'"status": {CLIENT_CLOSED}' in line for line in logged), logged
    assert all("client disconnected" in line for line in logged)
    assert not [line for line in server_logs.lines if "Traceback" in line or " ERROR " in line]


def test_an_unexpected_error_is_one_500_logged_once(
    db_url: str, world: World, server_logs: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api_module, "list_runs", broken)
    with serve(db_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        response = client.get("/v1/coverage-runs", headers=world.auth)
        problem = problem_of(response, 500)
        assert "logged" in problem["detail"]
        assert response.headers["X-Request-ID"]
        assert client.get("/healthz").status_code == 200
    assert sum("Traceback" in line for line in server_logs.lines) == 1


# --- the dashboard's cookie and other origins ---------------------------------------


def test_cookie_writes_from_another_origin_are_refused(
    db_url: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    with serve(db_url) as base, httpx.Client(base_url=base, timeout=30) as browser:
        own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        assert browser.post("/session", json={"api_key": world.key}, headers=own).status_code == 204
        body = single(world, world.ann)
        # A page of the same site on another origin posts with the cookie.
        for foreign in (
            {"Origin": "http://evil.127.0.0.1.nip.io:9000", "Sec-Fetch-Site": "same-site"},
            {"Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},
        ):
            problem = problem_of(browser.post("/v1/coverage-runs", json=body, headers=foreign), 403)
            assert "origin" in problem["detail"]
            problem_of(browser.delete("/session", headers=foreign), 403)
        assert run_count(conn) == 0
        assert browser.get("/session").status_code == 200  # the session was not ended
        # The dashboard's own requests pass: by Sec-Fetch-Site, or by Origin alone.
        body_of(browser.post("/v1/coverage-runs", json=body, headers=own), 201)
        body_of(browser.post("/v1/coverage-runs", json=body, headers={"Origin": base}), 201)
        # A Bearer key is not ambient: another origin may use its own key.
        response = browser.post(
            "/v1/coverage-runs", json=body, headers={**world.auth, "Origin": "http://evil.example"}
        )
        body_of(response, 201)
        assert browser.delete("/session", headers=own).status_code == 204
    assert run_count(conn) == 3


def test_the_configured_public_url_is_the_only_origin(db_url: str, world: World) -> None:
    public = "https://crm.example.com/coverage"
    with serve(db_url, public_url=public) as base, httpx.Client(base_url=base) as browser:
        problem_of(
            browser.post("/session", json={"api_key": world.key}, headers={"Origin": base}), 403
        )
        signed_in = browser.post(
            "/session", json={"api_key": world.key}, headers={"Origin": "https://crm.example.com"}
        )
        assert signed_in.status_code == 204


# --- caches, sessions, links --------------------------------------------------------


def test_every_tenant_response_is_private(db_url: str, world: World) -> None:
    with serve(db_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        run = body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)
        run_id = run["run_id"]
        paths = [
            "/v1/coverage-runs",
            f"/v1/coverage-runs/{run_id}",
            f"/v1/coverage-runs/{run_id}/deals",
            f"/v1/coverage-runs/{run_id}/compare/{run_id}",
            "/v1/periods",
            f"/v1/coverage/history?principal_type=USER&principal_id={world.ann}"
            "&period_start=2026-01-01&period_end=2026-04-01",
            f"/v1/coverage/same-point?principal_type=USER&principal_id={world.ann}",
            "/v1/coverage-runs/" + str(uuid.uuid4()),  # a 404 too
        ]
        for path in paths:
            for accept in ("application/json", "text/csv"):
                response = client.get(path, headers={**world.auth, "Accept": accept})
                assert response.status_code in (200, 404), (path, response.text)
                assert "private" in response.headers["Cache-Control"], path
        created = client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth)
        assert "private" in created.headers["Cache-Control"]
        assert created.headers["Location"] == f"/v1/coverage-runs/{created.json()['run_id']}"
        assert "private" in client.get("/session").headers["Cache-Control"]  # a 401
        # What holds nothing of a tenant stays cacheable.
        assert "Cache-Control" not in client.get("/healthz").headers


def test_a_key_keeps_a_bounded_number_of_sessions(
    db_url: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    signed: list[str] = []
    with serve(db_url) as base:
        for _ in range(MAX_SESSIONS_PER_KEY + 15):
            with httpx.Client(base_url=base, timeout=30) as browser:
                assert browser.post("/session", json={"api_key": world.key}).status_code == 204
                signed.append(browser.cookies[SESSION_COOKIE])
        row = conn.execute(
            "SELECT count(*) FROM dyno_crm.api_session WHERE tenant_id = %s", (world.tenant,)
        ).fetchone()
        conn.commit()
        assert row is not None
        assert row[0] == MAX_SESSIONS_PER_KEY
        # The newest sessions live on; the oldest ended.
        newest, oldest = signed[-MAX_SESSIONS_PER_KEY:], signed[:-MAX_SESSIONS_PER_KEY]
        for cookie, alive in [(newest[0], True), (newest[-1], True), (oldest[-1], False)]:
            with httpx.Client(base_url=base, cookies={SESSION_COOKIE: cookie}) as browser:
                assert browser.get("/session").status_code == (200 if alive else 401)


def test_the_csv_link_never_echoes_the_requests_host(db_url: str, world: World) -> None:
    for public, prefix in (
        (None, "/v1/"),
        ("https://crm.example.com", "https://crm.example.com/v1/"),
    ):
        with serve(db_url, public_url=public) as base, httpx.Client(base_url=base) as client:
            run = body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)
            response = client.get(
                f"/v1/coverage-runs/{run['run_id']}/deals?limit=1",
                headers={**world.auth, "Accept": "text/csv", "Host": "attacker.example"},
            )
            assert response.status_code == 200
            link = response.headers["Link"]
            assert "attacker" not in link
            assert link.startswith(f"<{prefix}coverage-runs/{run['run_id']}/deals?")


# --- a connection lost after the commit ---------------------------------------------


def _terminate(admin: psycopg.Connection[Any], conn: Any) -> None:
    admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    wait_until(
        lambda: (
            not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (conn.info.backend_pid,)
            ).fetchone()
        ),
        "the backend is gone",
    )


@pytest.mark.parametrize("when", ["before the answer is read", "at the commit"])
def test_a_committed_run_is_answered_as_created_when_its_connection_is_lost(
    db_url: str,
    world: World,
    conn: psycopg.Connection[Any],
    admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """The server's connection is really terminated (pg_terminate_backend) once the run
    is committed: either while the run is read back for the answer, or right after the
    commit, before the core returns (as a kill during COMMIT itself would look)."""
    real_get_run, real_run_coverage = store.get_run, coverage.run_coverage
    killed: list[int] = []

    def killing_get_run(connection: Any, *args: Any, **kwargs: Any) -> Any:
        if not killed:
            killed.append(connection.info.backend_pid)
            _terminate(admin, connection)
        return real_get_run(connection, *args, **kwargs)

    def killing_run_coverage(connection: Any, *args: Any, **kwargs: Any) -> Any:
        real_run_coverage(connection, *args, **kwargs)
        killed.append(connection.info.backend_pid)
        _terminate(admin, connection)
        return coverage.run_of_key(connection, world.tenant, "any")  # fails: connection lost

    if when == "before the answer is read":
        monkeypatch.setattr(api_module, "get_run", killing_get_run)
    else:
        monkeypatch.setattr(api_module, "run_coverage", killing_run_coverage)
    with serve(db_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        started = time.monotonic()
        response = client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth)
        created = body_of(response, 201)
        assert time.monotonic() - started < 20
        assert response.headers["Location"] == f"/v1/coverage-runs/{created['run_id']}"
        assert "Idempotent-Replayed" not in response.headers
        assert killed
        assert len(created["rows"]) == 3
        again = body_of(client.get(response.headers["Location"], headers=world.auth), 200)
        assert again["rows"] == created["rows"]
    assert run_count(conn) == 1
