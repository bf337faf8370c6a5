"""``make bench`` parses its options (it runs only on demand, so a broken parser would
otherwise go unnoticed until someone measures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (
        "--only {all,core,movement,snapshot,http,import,history,calibration,citus}" in done.stdout
    )
    assert "--import-xlsx-deals" in done.stdout
