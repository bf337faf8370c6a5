"""The HTTP server's safety rules, over real HTTP on a real PostgreSQL: what a client
that goes away, a page of another origin, a shared cache or a lost connection after
a commit can and cannot do."""

from __future__ import annotations

import concurrent.futures
import contextlib
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


# --- connections: deadlines and the cap ---------------------------------------------


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent
    before closing, a 503 say, is read and dropped)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:  # reset
        return True
    return False


def test_idle_and_slow_connections_are_closed_and_healthz_answers_at_the_cap(
    db_url: str, world: World
) -> None:
    cap = 20
    with serve(db_url, max_connections=cap, header_timeout=1.5, keepalive_seconds=1) as base:
        port = _port(base)
        # An attacker fills the cap and more: silent connections, and slowloris ones
        # that send a header line every 0.3 s and never finish.
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap + 10)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # A real client still gets in, at once.
        started = time.monotonic()
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/coverage-runs", headers=world.auth).status_code == 200
        assert time.monotonic() - started < 2
        # At the cap, the longest-waiting connections made room (the oldest silent ones).
        assert sum(_closed_by_server(sock, 0.2) for sock in silent[:15]) >= 15
        # Every silent or slow connection is closed by the read deadline, however
        # steadily the slow ones keep sending.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.3)
        assert all(_closed_by_server(sock, 1) for sock in silent + slow)
        # Blank lines begin no request: they do not keep a connection open either.
        with socket.create_connection(("127.0.0.1", port)) as blank:
            for _ in range(8):
                try:
                    blank.sendall(b"\r\n")
                except OSError:
                    break
                time.sleep(0.3)
            assert _closed_by_server(blank, 1)
        # An idle keep-alive connection goes after keepalive_seconds.
        with socket.create_connection(("127.0.0.1", port)) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in kept.recv(4096)
            assert _closed_by_server(kept, 3)
        for sock in silent + slow:
            sock.close()


def test_a_request_being_answered_is_never_closed_to_make_room(
    db_url: str, world: World, conn: psycopg.Connection[Any], admin: psycopg.Connection[Any]
) -> None:
    from tests.integration.test_api_limits import api_backends, hold_tenant

    cap = 10
    with serve(db_url, max_connections=cap, header_timeout=5) as base:
        holder = hold_tenant(db_url, world.tenant)  # the run waits for this lock
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(
                    httpx.post, f"{base}/v1/coverage-runs", json=PERIOD,
                    headers=world.auth, timeout=30,
                )  # fmt: skip
                wait_until(lambda: bool(api_backends(admin, waiting=True)), "the run waits")
                flood = [socket.create_connection(("127.0.0.1", _port(base))) for _ in range(40)]
                with httpx.Client(base_url=base, timeout=5) as client:
                    assert client.get("/healthz").status_code == 200
                holder.commit()
                body_of(pending.result(timeout=30), 201)
                for sock in flood:
                    sock.close()
        finally:
            holder.close()
    assert run_count(conn) == 1


def test_a_new_connection_is_answered_503_when_every_connection_is_answering(
    db_url: str, world: World, conn: psycopg.Connection[Any], admin: psycopg.Connection[Any]
) -> None:
    from tests.integration.test_api_limits import api_backends, hold_tenant

    cap = 3
    with serve(db_url, max_connections=cap) as base:
        holder = hold_tenant(db_url, world.tenant)  # the runs wait for this lock
        try:
            with concurrent.futures.ThreadPoolExecutor(cap) as pool:
                pending = [
                    pool.submit(
                        httpx.post,
                        f"{base}/v1/coverage-runs",
                        json=PERIOD,
                        headers=world.auth,
                        timeout=30,
                    )
                    for _ in range(cap)
                ]
                # Two runs wait on the lock, the third for its tenant's run slot.
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 2, "runs wait")
                time.sleep(0.3)
                with socket.create_connection(("127.0.0.1", _port(base))) as late:
                    late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    late.settimeout(5)
                    answer = late.recv(4096)
                assert answer.startswith(b"HTTP/1.1 503"), answer
                assert b"retry-after: 1" in answer.lower()
                holder.commit()
                for future in pending:
                    body_of(future.result(timeout=30), 201)
        finally:
            holder.close()
    assert run_count(conn) == cap


# --- each tenant's share of the reads -----------------------------------------------


def test_a_tenants_reads_use_at_most_its_share_of_the_connections(
    db_url: str, world: World, other: World, admin: psycopg.Connection[Any]
) -> None:
    """Tenant A's burst of reads holds at most ``tenant_reads`` connections; the rest of
    the burst waits for A's own turn (429 after the queue time), while tenant B's reads
    get connections of their own at once. Reads are held by a lock on the runs table."""
    from tests.integration.test_api_limits import api_backends

    with serve(db_url, pool_size=6, tenant_reads=2, queue_seconds=1.5) as base:
        with httpx.Client(base_url=base, timeout=30) as client:  # the pool is warm
            assert client.get("/v1/coverage-runs", headers=world.auth).status_code == 200
        holder = psycopg.connect(db_url)
        holder.execute("LOCK TABLE dyno_crm.report_run IN ACCESS EXCLUSIVE MODE")
        try:
            with concurrent.futures.ThreadPoolExecutor(7) as pool:

                def read(who: World) -> concurrent.futures.Future[httpx.Response]:
                    return pool.submit(
                        httpx.get, f"{base}/v1/coverage-runs", headers=who.auth, timeout=30
                    )

                burst = [read(world) for _ in range(5)]
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 2, "A reads")
                time.sleep(0.3)
                assert len(api_backends(admin, waiting=True)) == 2  # not 5
                theirs = [read(other) for _ in range(2)]
                wait_until(lambda: len(api_backends(admin, waiting=True)) == 4, "B reads")
                time.sleep(1.5)  # past the queue time of A's waiting reads
                holder.commit()
                statuses = sorted(f.result(timeout=30).status_code for f in burst)
                assert statuses == [200, 200, 429, 429, 429]
                assert [f.result(timeout=30).status_code for f in theirs] == [200, 200]
                refused = next(f.result() for f in burst if f.result().status_code == 429)
                assert "2 requests reading" in refused.json()["detail"]
                assert refused.headers["Retry-After"]
        finally:
            holder.close()


def test_a_tenants_whole_run_pages_are_read_one_at_a_time_across_workers(
    db_url: str, world: World, other: World
) -> None:
    """A page of a whole run's drill-down waits while another worker reads one of the
    same tenant's (here: a session holding that tenant's page lock), then 429 after
    the queue time. Waiting, it holds no read slot: with one slot per tenant (a share
    of 2 at two workers), the tenant's principal drill-downs and its run are answered
    meanwhile, as are another tenant's pages; once the other page is done, pages are
    answered again."""
    from pipeline_coverage.web.deps import PAGE_LOCK_CLASS

    settings = {"queue_seconds": 1.5, "tenant_reads": 1, "run_cache_seconds": 0}
    with serve(db_url, **settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        ours = body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=world.auth), 201)
        theirs = body_of(client.post("/v1/coverage-runs", json=PERIOD, headers=other.auth), 201)
        pages = f"/v1/coverage-runs/{ours['run_id']}/deals"
        assert body_of(client.get(pages, headers=world.auth), 200)["deals"]
        holder = psycopg.connect(db_url)  # another worker, reading one of the tenant's pages
        holder.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (PAGE_LOCK_CLASS, str(world.tenant))
        )
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                waiting = pool.submit(client.get, pages, headers=world.auth)
                csv = pool.submit(client.get, pages, headers={**world.auth, "Accept": "text/csv"})
                time.sleep(0.3)  # both are waiting for their turn
                assert not waiting.done()
                # The tenant's other reads, and another tenant's pages, are not held.
                started = time.monotonic()
                one = {"principal_type": "USER", "principal_id": str(world.ann)}
                assert body_of(client.get(pages, params=one, headers=world.auth), 200)["deals"]
                body_of(client.get(f"/v1/coverage-runs/{ours['run_id']}", headers=world.auth), 200)
                other_pages = f"/v1/coverage-runs/{theirs['run_id']}/deals"
                assert body_of(client.get(other_pages, headers=other.auth), 200)["deals"]
                assert time.monotonic() - started < 1.0  # not after the pages' 429
                refused = waiting.result(timeout=30)
                assert csv.result(timeout=30).status_code == 429  # the CSV pages too
            assert problem_of(refused, 429)["detail"] == (
                "the tenant's whole-run pages are read one at a time"
            )
            assert refused.headers["Retry-After"] == "2"
        finally:
            holder.close()
        assert body_of(client.get(pages, headers=world.auth), 200)["deals"]


# --- serve --workers ----------------------------------------------------------------


def test_serve_with_workers_shares_sessions_and_stops_cleanly(db_url: str, world: World) -> None:
    """``serve --workers 2``: two processes on one port; a dashboard cookie signed by
    one is good at the other (they share the session key), and SIGTERM stops all."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_COVERAGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_coverage", "--database-url", db_url, "serve",
         "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base) or proc.poll() is not None, "the server is ready", 60)
        assert proc.poll() is None, proc.communicate()
        workers = psutil.Process(proc.pid).children()  # (and multiprocessing's helper)
        assert len(workers) >= 2
        with httpx.Client(base_url=base, timeout=10) as browser:
            assert browser.post("/session", json={"api_key": world.key}).status_code == 204
            cookie = browser.cookies[SESSION_COOKIE]
        for _ in range(20):  # a new connection each time: any worker may answer
            with httpx.Client(base_url=base, timeout=10, cookies={SESSION_COOKIE: cookie}) as c:
                assert c.get("/session").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "with 2 worker processes" in stderr
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == []


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
