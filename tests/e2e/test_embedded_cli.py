"""The CLI on its embedded default: started on demand, migrated, and stopped when the
command ends — also when it is interrupted — so no server is ever left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def servers_for(pgdata: Path) -> list[psutil.Process]:
    """Running postgres processes serving ``pgdata``."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env["PIPELINE_COVERAGE_DATA_DIR"] = str(data_dir)
    return env


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_coverage", *args],
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_embedded_default_starts_migrates_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    status = cli(data_dir, "db", "status")
    assert status.returncode == 0, status.stderr
    assert "embedded PostgreSQL" in status.stdout
    assert "up to date" in status.stdout
    pgdata = data_dir / "pg18"
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    assert servers_for(pgdata) == []

    # The data persists between commands: a run made now is listed by the next command.
    demo = cli(data_dir, "demo", "--deals", "300")
    assert demo.returncode == 0, demo.stderr
    assert "Northwind Traders (demo)" in demo.stdout
    runs = cli(data_dir, "runs", "--format", "csv", "--limit", "500")
    assert runs.returncode == 0, runs.stderr
    listed = runs.stdout.strip().splitlines()
    # header, the demo's run, and its made-up past quarters (8 x 13 weekly runs and a
    # closing run each, marked demo_history) that calibration learns from
    assert len(listed) == 2 + 8 * 14
    assert sum("demo_history" in line for line in listed) == 8 * 14
    assert servers_for(pgdata) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("moment", [0.0, 1.0])
def test_interrupted_command_stops_the_server(tmp_path: Path, signum: int, moment: float) -> None:
    data_dir = tmp_path / "data"
    pgdata = data_dir / "pg18"
    # A large demo keeps the command busy long enough to be interrupted mid-way.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_coverage", "demo", "--deals", "1000000"],
        env=cli_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not servers_for(pgdata):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the embedded server never started"
            time.sleep(0.1)
        time.sleep(moment)  # right at start-up, or once the generator runs
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["pipeline-coverage: interrupted"]
    assert servers_for(pgdata) == []


def test_serve_runs_on_the_embedded_default_and_stops_cleanly(tmp_path: Path) -> None:
    import socket

    import httpx

    data_dir = tmp_path / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_coverage", "serve", "--port", str(port)],
        env=cli_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server never became ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        unauthorized = httpx.get(f"http://127.0.0.1:{port}/v1/coverage-runs", timeout=5)
        assert unauthorized.status_code == 401
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert servers_for(data_dir / "pg18") == []
