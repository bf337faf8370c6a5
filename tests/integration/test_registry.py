"""Everything that lists a fact row's metrics reads the registry
(``pipeline_coverage.metrics``): the CLI's CSV header and JSON rows, its table's
columns, the API's rows (JSON and CSV) and OpenAPI models, and the dashboard's columns.
So adding a metric is its registry line, its column, its computation and its oracle
(docs/metrics.md, "Adding a metric"): these tests fail if any of them lists metrics
of its own."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import get_run, run_pipeline_coverage_batch
from pipeline_coverage.cli import main
from pipeline_coverage.metrics import METRICS, NAMES
from pipeline_coverage.render import run_table
from tests.worlds import Q1, World


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    assert main(["--database-url", url, *args]) == 0
    return capsys.readouterr().out


def test_every_metric_of_the_registry_is_in_every_output(
    conn: psycopg.Connection[Any],
    db_url: str,
    world: World,
    api: httpx.Client,
    live_server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    run_id = str(run_pipeline_coverage_batch(conn, world.tenant, *Q1))

    # The CLI: the CSV header, every JSON row, and a table of every metric's label.
    header = next(csv.reader(io.StringIO(cli(capsys, db_url, "show", run_id, "--format", "csv"))))
    assert [name for name in header if name in NAMES] == list(NAMES)
    rows = json.loads(cli(capsys, db_url, "show", run_id, "--format", "json"))["rows"]
    assert rows
    assert all(list(NAMES) == [name for name in row if name in NAMES] for row in rows)
    table = run_table(get_run(conn, run_id), NAMES)  # what `show --columns` prints
    assert [str(column.header) for column in table.columns][2:] == [m.label for m in METRICS]
    assert cli(capsys, db_url, "show", run_id, "--columns", ",".join(NAMES))

    # The HTTP API: the run's rows as JSON and as CSV, and the models OpenAPI documents.
    run = api.get(f"/v1/coverage-runs/{run_id}", headers=world.auth).json()
    assert all(set(NAMES) <= set(row) for row in run["rows"])
    text = api.get(f"/v1/coverage-runs/{run_id}", headers={**world.auth, "Accept": "text/csv"}).text
    assert [name for name in next(csv.reader(io.StringIO(text))) if name in NAMES] == list(NAMES)
    schemas = httpx.get(f"{live_server}/openapi.json", timeout=30).json()["components"]["schemas"]
    for model in ("Row", "Point"):
        properties = schemas[model]["properties"]
        assert [name for name in properties if name in NAMES] == list(NAMES), model
        for metric in METRICS:
            assert metric.label in properties[metric.name]["description"]

    # The dashboard: its columns are the metrics the session lists, with their labels
    # and units, and its script builds its table and its column picker from them.
    signed_in = api.post("/session", json={"api_key": world.key})
    assert signed_in.status_code == 204, signed_in.text
    session = api.get("/session").json()
    assert [(m["name"], m["label"], m["unit"]) for m in session["metrics"]] == [
        (m.name, m.label, m.unit) for m in METRICS
    ]
    script = resources.files("pipeline_coverage.web").joinpath("static", "dashboard.js")
    source = script.read_text(encoding="utf-8")
    assert "state.metrics = new Map(state.session.metrics.map(" in source
    assert "state.session.metrics.map((metric)" in source  # the column picker
