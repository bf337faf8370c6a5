"""`make test` gives each run a temporary folder of its own.

pytest's shared ``/tmp/pytest-of-USER`` is pruned and made ``drwx------`` by any other
pytest of the same user; the embedded server (run as another user when root) then
loses its data. The recipe runs here for real, with a stand-in for the virtualenv's
python that records what it was given.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/bin/sh
# Stands in for pytest: records its arguments and whether --basetemp's folder exists.
for arg in "$@"; do printf '%s\\n' "$arg"; done > "$RECORD"
for arg in "$@"; do
  case "$arg" in --basetemp=*) [ -d "${arg#--basetemp=}" ] && echo exists >> "$RECORD";; esac
done
exit "${FAKE_STATUS:-0}"
"""


def make_test(tmp_path: Path, pytest_args: str, status: int = 0) -> tuple[int, list[str]]:
    """Run `make test PYTEST_ARGS=...` with a stand-in virtualenv; its exit status and
    the arguments the stand-in pytest got."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON, encoding="utf-8")
    python.chmod(0o755)
    stamp = venv / ".installed"  # newer than pyproject.toml: setup has nothing to do
    stamp.touch()
    os.utime(stamp, (2**31, 2**31))
    record = tmp_path / "args"
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "test", f"VENV={venv}", f"PYTEST_ARGS={pytest_args}"],
        env={**os.environ, "RECORD": str(record), "FAKE_STATUS": str(status)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, record.read_text(encoding="utf-8").splitlines()


def basetemps(args: list[str]) -> list[str]:
    return [arg.removeprefix("--basetemp=") for arg in args if arg.startswith("--basetemp")]


def test_a_run_gets_a_temporary_folder_of_its_own_removed_when_it_passes(tmp_path: Path) -> None:
    status, args = make_test(tmp_path, "-q -k 'a or b'")
    assert status == 0
    [folder] = basetemps(args)
    assert Path(folder).name.startswith("pipeline-coverage-test.")
    assert "exists" in args  # made before pytest starts
    assert args[:2] == ["-m", "pytest"]
    assert args[3:6] == ["-q", "-k", "a or b"]  # PYTEST_ARGS passed on, quoting intact
    assert not Path(folder).exists()  # a passing run leaves nothing behind


def test_a_failing_run_keeps_its_folder(tmp_path: Path) -> None:
    status, args = make_test(tmp_path, "-x", status=1)
    assert status != 0
    [folder] = basetemps(args)
    try:
        assert Path(folder).is_dir()  # for looking into what failed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_basetemp_of_the_caller_is_kept(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    status, args = make_test(tmp_path, shlex.join([f"--basetemp={mine}", "-q"]))
    assert status == 0
    assert basetemps(args) == [str(mine)]
