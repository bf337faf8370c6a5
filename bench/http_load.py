"""HTTP load: 50 concurrent clients for 30 s on loopback against `pipeline-coverage serve`,
mixing GETs of a 5,000-row run with POSTs of single-principal runs.

The server runs as its own process (the real command); the clients share the same
2-core machine, so the figures are a pessimistic bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.db import migrate
from pipeline_coverage.periods import quarter_of
from pipeline_coverage.web.app import APPLICATION_NAME

HTTP_DB = "pipeline_coverage_bench_http"


@dataclass
class Results:
    """Latencies (ms) per request kind, and the failures seen."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"GET": [], "POST": []})
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def prepare(server_url: str, principals: int) -> tuple[str, uuid.UUID, uuid.UUID, list[str], str]:
    """A fresh database with one tenant of ``principals`` reps and teams, a batch run
    over all of them, and an API key. Built with set-based SQL: it is setup, not the
    thing measured."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(HTTP_DB))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(HTTP_DB)))
    url = make_conninfo(server_url, dbname=HTTP_DB)
    migrate.upgrade(url)
    tenant = uuid.uuid4()
    start, end = quarter_of(dt.date.today())
    groups = principals // 25
    users = principals - groups
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO dyno_crm.tenant VALUES (%s, 'HTTP bench')", (tenant,))
        conn.execute(
            "INSERT INTO dyno_crm.crm_user (tenant_id, id, name)"
            " SELECT %s, gen_random_uuid(), 'Rep ' || n FROM generate_series(1, %s) AS n",
            (tenant, users),
        )
        conn.execute(
            "INSERT INTO dyno_crm.crm_group (tenant_id, id, name)"
            " SELECT %s, gen_random_uuid(), 'Team ' || n FROM generate_series(1, %s) AS n",
            (tenant, groups),
        )
        conn.execute(
            "INSERT INTO dyno_crm.pipeline VALUES (%s, %s, 'Sales')",
            (tenant, pipeline := uuid.uuid4()),
        )
        conn.execute(
            "INSERT INTO dyno_crm.pipeline_stage VALUES (%s, %s, %s, 'Open', 'IN_PROGRESS', 50, 1)",
            (tenant, stage := uuid.uuid4(), pipeline),
        )
        conn.execute(
            "INSERT INTO dyno_crm.deal (tenant_id, id, pipeline_id, stage_id, name, amount,"
            " expected_close_date, owned_by_user_id)"
            " SELECT %s, gen_random_uuid(), %s, %s, 'Deal', (random() * 100000)::numeric(18,2),"
            "        %s::date + (random() * 80)::int, u.id"
            " FROM dyno_crm.crm_user AS u, generate_series(1, 20)"
            " WHERE u.tenant_id = %s",
            (tenant, pipeline, stage, start, tenant),
        )
        conn.execute(
            "INSERT INTO dyno_crm.sales_target SELECT tenant_id, gen_random_uuid(), 'USER', id,"
            " NULL, %s, %s, 500000 FROM dyno_crm.crm_user WHERE tenant_id = %s",
            (start, end, tenant),
        )
        conn.commit()
        run_id = run_pipeline_coverage_batch(conn, tenant, start, end)
        ids = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s", (tenant,)
            )
        ]
        conn.commit()
        _, key = create_api_key(conn, tenant, "http bench")
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return url, tenant, run_id, ids, key + "|" + start.isoformat() + "|" + end.isoformat()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _client(
    client: httpx.AsyncClient,
    results: Results,
    deadline: float,
    run_id: uuid.UUID,
    users: list[str],
    period: tuple[str, str],
    rng: random.Random,
) -> None:
    while time.monotonic() < deadline:
        kind = "GET" if rng.random() < 0.5 else "POST"
        started = time.perf_counter()
        try:
            if kind == "GET":
                response = await client.get(f"/v1/coverage-runs/{run_id}")
            else:
                response = await client.post(
                    "/v1/coverage-runs",
                    json={
                        "period_start": period[0],
                        "period_end": period[1],
                        "principal_type": "USER",
                        "principal_id": rng.choice(users),
                    },
                )
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code >= 300:
                results.errors.append(f"{kind} {response.status_code}")
            else:
                results.latencies[kind].append(elapsed)
        except httpx.HTTPError as exc:
            results.errors.append(f"{kind} {type(exc).__name__}")


async def _load(
    base: str,
    key: str,
    run_id: uuid.UUID,
    users: list[str],
    period: tuple[str, str],
    clients: int,
    seconds: float,
) -> Results:
    results = Results()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *[
                _client(client, results, deadline, run_id, users, period, random.Random(n))
                for n in range(clients)
            ]
        )
        results.seconds = time.monotonic() - started
    return results


def _serve_and_load(
    url: str, port: int, env: dict[str, str], server_log: Any, key: str, run_id: uuid.UUID,
    users: list[str], period: tuple[str, str], clients: int, seconds: float,
) -> tuple[Results, list[float], float, int]:  # fmt: skip
    """Start ``serve`` (its stderr into ``server_log``), load it, stop it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline_coverage", "--database-url", url, "serve",
         "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=server_log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, server)
        results = asyncio.run(_load(base, key, run_id, users, period, clients, seconds))
        healthz_ms, refused_ms = _healthz_while_refusing(base)
        lost_errors = _errors_after_connections_end(base, url, key, run_id)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results, healthz_ms, refused_ms, lost_errors


def wait_until_ready(base: str, server: subprocess.Popen[Any], seconds: float = 60) -> None:
    """Until the server at ``base`` answers /readyz (an error if it dies or never does)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server did not become ready")
        time.sleep(0.2)


def pct(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


def run_http_load(
    server_url: str, clients: int = 50, seconds: float = 30, principals: int = 5000
) -> list[tuple[str, str, str, bool | None]]:
    """Set up, start the server, load it, stop it; return (figure, value, goal, met)."""
    url, _, run_id, users, packed = prepare(server_url, principals)
    key, start, end = packed.split("|")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # The server's log (one JSON line per request): kept to explain any error.
    with tempfile.TemporaryFile("w+") as server_log:
        results, healthz_ms, refused_ms, lost_errors = _serve_and_load(
            url, port, env, server_log, key, run_id, users, (start, end), clients, seconds
        )
        if results.errors:
            server_log.seek(0)
            failed = [line.strip() for line in server_log if '"status": 2' not in line]
            print(f"server log: {len(failed)} lines other than 2xx: {failed[-5:]}",
                  file=sys.stderr)  # fmt: skip
    gets, posts = results.latencies["GET"], results.latencies["POST"]
    total = len(gets) + len(posts) + len(results.errors)
    get_p99 = pct(gets, 0.99)
    figures: list[tuple[str, str, str, bool | None]] = [
        (
            f"HTTP: {clients} clients x {seconds:.0f} s, requests/s",
            f"{total / results.seconds:,.1f} ({total:,} requests)",
            "",
            None,
        ),
        (
            f"HTTP GET {principals:,}-row run: p50 / p99",
            f"{pct(gets, 0.5):.0f} / {get_p99:.0f} ms ({len(gets):,})",
            "p99 < 250 ms",
            get_p99 < 250,
        ),
        (
            "HTTP POST single run: p50 / p99",
            f"{pct(posts, 0.5):.0f} / {pct(posts, 0.99):.0f} ms ({len(posts):,})",
            "",
            None,
        ),
        (
            "HTTP errors",
            str(len(results.errors))
            + (f" ({statistics.mode(results.errors)} most often)" if results.errors else ""),
            "0",
            not results.errors,
        ),
        (
            "HTTP /healthz while a 5 MB body is refused: p50 / max",
            f"{pct(healthz_ms, 0.5):.1f} / {max(healthz_ms):.1f} ms ({len(healthz_ms)}); "
            f"413 in {refused_ms:.0f} ms",
            "max <= 100 ms",
            max(healthz_ms) <= 100,
        ),
        (
            "HTTP errors in the 20 requests after every pooled connection is terminated",
            str(lost_errors),
            "0",
            lost_errors == 0,
        ),
    ]
    return figures


def _healthz_while_refusing(base: str) -> tuple[list[float], float]:
    """Time /healthz while a 5 MB body streams in and is refused (no Content-Length,
    so the server reads up to its limit before it can refuse)."""
    refused_ms: list[float] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b"k" * 65_536

    def refuse() -> None:
        started = time.perf_counter()
        response = httpx.post(f"{base}/session", content=chunks(), timeout=60)
        refused_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 413:
            raise RuntimeError(f"a 5 MB body got {response.status_code}, not 413")

    samples: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(5):
            refusing = threading.Thread(target=refuse)
            refusing.start()
            while refusing.is_alive():
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            refusing.join()
    return samples, statistics.median(refused_ms)


def _errors_after_connections_end(base: str, url: str, key: str, run_id: uuid.UUID) -> int:
    """Terminate every connection of the server, then count failures among the next 20
    requests (reads of a run, run lists, /readyz)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        )
    errors = 0
    with httpx.Client(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for n in range(20):
            path = ("/readyz", f"/v1/coverage-runs/{run_id}", "/v1/coverage-runs")[n % 3]
            if client.get(path, headers={"Cache-Control": "no-cache"}).status_code >= 300:
                errors += 1
    return errors


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    for figure in run_http_load(args.database_url, args.clients, args.seconds):
        print(*figure[:3], sep=" | ")


if __name__ == "__main__":
    main()
