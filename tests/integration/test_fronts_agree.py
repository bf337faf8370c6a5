"""The CLI and the HTTP API resolve a run's request through one ``resolve_request``: they
accept and refuse the same requests, for the same field, and refuse alike a principal
that is not there (the CLI with exit 2 and one line, the API with a problem document),
writing nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.test_api import PERIOD, body_of, invalid_fields, post_run, problem_of
from tests.integration.test_api import run_count as api_run_count
from tests.integration.test_cli import assert_one_error_line, cli, run_count
from tests.worlds import World

DATES = ("--period-start", PERIOD["period_start"], "--period-end", PERIOD["period_end"])


@pytest.mark.parametrize(
    ("field", "args", "body"),
    [
        ("principal_id", ("--principal-type", "USER", "--principal-id", str(uuid.UUID(int=7))),
         {**PERIOD, "principal_type": "USER", "principal_id": str(uuid.UUID(int=7))}),
        ("pipeline_id", ("--all", "--pipeline", str(uuid.UUID(int=8))),
         {**PERIOD, "pipeline_id": str(uuid.UUID(int=8))}),
        ("period", ("--all", "--period", "2026-Q1", *DATES), {**PERIOD, "period": "2026-Q1"}),
        ("period_end", ("--all", "--period-start", PERIOD["period_start"]),
         {"period_start": PERIOD["period_start"]}),
        ("by_pipeline", ("--principal-type", "USER", "--principal-id", str(uuid.UUID(int=7)),
                         "--by-pipeline", *DATES),
         {**PERIOD, "principal_type": "USER", "principal_id": str(uuid.UUID(int=7)),
          "by_pipeline": True}),
    ],
)  # fmt: skip
def test_the_cli_and_the_api_refuse_the_same_request_for_the_same_field(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    api: httpx.Client,
    conn: psycopg.Connection[Any],
    world: World,
    field: str,
    args: tuple[str, ...],
    body: dict[str, Any],
) -> None:
    dates = () if any(a.startswith("--period") for a in args) else DATES
    refused = cli(capsys, db_url, "run", "--tenant", world.name, *dates, *args)
    line = assert_one_error_line(refused)
    assert f"error: {field}: " in line, line
    assert invalid_fields(api.post("/v1/coverage-runs", json=body, headers=world.auth)) == {field}
    assert run_count(db_url) == 0
    assert api_run_count(conn) == 0


def test_a_principal_a_run_has_no_row_for_is_not_found_by_either_front(
    capsys: pytest.CaptureFixture[str], db_url: str, api: httpx.Client, world: World
) -> None:
    """Its deals, and its movement between two runs: not an empty answer, but a refusal
    naming ``principal_id`` (the CLI: exit 2; the API: 404), as for an unknown run."""
    run_a = str(post_run(api, world, PERIOD)["run_id"])
    run_b = str(post_run(api, world, PERIOD)["run_id"])
    nobody = str(uuid.UUID(int=7))
    who = ("--principal-type", "USER", "--principal-id", nobody)
    for args, url in (
        (("show", run_a, "--deals", *who), f"/v1/coverage-runs/{run_a}/deals"),
        (("compare", run_a, run_b, *who), f"/v1/coverage-runs/{run_a}/compare/{run_b}"),
    ):
        line = assert_one_error_line(cli(capsys, db_url, *args))
        assert f"principal_id: run {run_a} has no row for USER {nobody}" in line or (
            f"principal_id: neither run has a row for USER {nobody}" in line
        ), line
        params = {"principal_type": "USER", "principal_id": nobody}
        problem = problem_of(api.get(url, params=params, headers=world.auth), 404)
        assert problem["detail"].startswith("principal_id: ")
    # A principal the run has, with or without deals, is answered as before.
    ann = {"principal_type": "USER", "principal_id": str(world.ann)}
    page = body_of(api.get(f"/v1/coverage-runs/{run_a}/deals", params=ann, headers=world.auth), 200)
    assert page["deals"]
    assert all(deal["principal_id"] == str(world.ann) for deal in page["deals"])
