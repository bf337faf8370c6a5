"""The API against its own OpenAPI document: the document covers every ``/v1``
operation and the bearer scheme, and schemathesis-generated requests (valid and
invalid) never get a server error from the live server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.reports.coverage import (
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from tests.factory import Crm

V1_OPERATIONS = {
    ("POST", "/v1/coverage-runs"),
    ("GET", "/v1/coverage-runs"),
    ("GET", "/v1/coverage-runs/{run_id}"),
    ("GET", "/v1/coverage-runs/{run_id}/deals"),
    ("GET", "/v1/coverage-runs/{run_id}/compare/{other_run_id}"),
    ("GET", "/v1/coverage/history"),
    ("GET", "/v1/periods"),
    ("GET", "/v1/coverage/same-point"),
    ("POST", "/v1/imports"),
}
Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
MAX_EXAMPLES = 30


@dataclass(frozen=True)
class Seeded:
    tenant: uuid.UUID
    key: str
    rep: uuid.UUID
    run_id: uuid.UUID
    later_run_id: uuid.UUID


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> Seeded:
    """A tenant with some data and stored runs, and an API key for it."""
    crm = Crm(conn)
    tenant = crm.tenant("Fuzzed")
    reps = [crm.user(tenant, f"Rep {n}") for n in range(3)]
    team = crm.group(tenant, "Team")
    for rep in reps[:2]:
        crm.member(tenant, team, rep)
    pipeline = crm.pipeline(tenant, "Sales")
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    won = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    for n, rep in enumerate(reps):
        crm.deal(tenant, pipeline, open_stage, f"{100 * (n + 1)}.25", Q1[0], owner=rep)
        crm.deal(tenant, pipeline, won, "999", Q1[0], owner=rep, owner_group=team)
    crm.deal(tenant, pipeline, open_stage, None, None, dt.date(2026, 2, 1), owner_group=team)
    crm.target(tenant, "USER", reps[0], *Q1, "1000")
    crm.target(tenant, "GROUP", team, *Q1, "2500", pipeline=pipeline)
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True)
    run_pipeline_coverage_report(conn, tenant, *Q1, "USER", reps[0])
    later_run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True)
    _, key = create_api_key(conn, tenant, "fuzz")
    return Seeded(tenant, key, reps[0], run_id, later_run_id)


@pytest.fixture
def hypothesis_home(tmp_path: Path) -> Iterator[Path]:
    """Hypothesis keeps no example database here (``database=None``), but it caches
    other things on disk: keep them out of the repository."""
    home = tmp_path / "hypothesis"
    set_hypothesis_home_dir(home)
    try:
        yield home
    finally:
        set_hypothesis_home_dir(None)


def openapi_document(live_server: str) -> dict[str, Any]:
    response = httpx.get(f"{live_server}/openapi.json", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_openapi_documents_every_v1_operation_and_bearer_auth(live_server: str) -> None:
    document = openapi_document(live_server)
    assert document["openapi"].startswith("3.")
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if path.startswith("/v1/")
    }
    assert operations == V1_OPERATIONS

    schemes = document["components"]["securitySchemes"]
    bearer = {
        name
        for name, scheme in schemes.items()
        if scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
    }
    assert bearer, schemes
    for method, path in V1_OPERATIONS:
        operation = document["paths"][path][method.lower()]
        assert operation["security"], (method, path)
        for requirement in operation["security"]:
            assert set(requirement) <= bearer, (method, path)
        assert {"401", "422"} <= set(operation["responses"]), (method, path)
    # Health checks need no key; the dashboard's routes are not part of the API.
    for path in ("/healthz", "/readyz"):
        assert "security" not in document["paths"][path]["get"]
    assert not {"/", "/session"} & set(document["paths"])

    post = document["paths"]["/v1/coverage-runs"]["post"]
    assert "201" in post["responses"]
    assert "409" in post["responses"]
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    # Amounts are decimal strings in the schema as well.
    row = document["components"]["schemas"]["Row"]["properties"]
    open_amount = row["open_amount"]
    assert open_amount["type"] == "string"
    assert "pattern" in open_amount


def test_problem_responses_are_documented_as_problem_json(live_server: str) -> None:
    document = openapi_document(live_server)
    for method, path in V1_OPERATIONS:
        responses = document["paths"][path][method.lower()]["responses"]
        for status in ("401", "404", "422"):
            content = responses[status]["content"]
            assert set(content) == {"application/problem+json"}, (method, path, status)
            assert content["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }


#: A request that waits longer than this for a database connection is answered 503
#: with Retry-After (web/deps.py): the documented answer of a busy server, not a fault.
#: On a loaded machine (the suite beside another) a generated request can meet it.
BUSY_RETRIES = 3


def _call(case: schemathesis.Case[Any], base_url: str, auth: dict[str, str]) -> Any:
    """The case's response; a 503 of a busy database is asked again (a 503 without
    ``Retry-After``, or one that persists, still fails the check)."""
    for _ in range(BUSY_RETRIES):
        response = case.call(base_url=base_url, headers=auth, timeout=30)
        if response.status_code != 503 or "retry-after" not in response.headers:
            break
    return response


def test_no_generated_request_gets_a_server_error(
    live_server: str, seeded: Seeded, hypothesis_home: Path
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json", timeout=30)
    auth = {"Authorization": f"Bearer {seeded.key}"}
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "operations the schema does not describe properly"
    paths = openapi_document(live_server)["paths"]
    labels = {(operation.method.upper(), operation.path) for operation in operations}
    assert labels >= V1_OPERATIONS

    # Besides free generation: a stored run's id, and a principal with history.
    pinned: dict[tuple[str, str], dict[str, Any]] = {
        ("GET", "/v1/coverage-runs/{run_id}"): {"path_parameters": {"run_id": str(seeded.run_id)}},
        ("GET", "/v1/coverage-runs/{run_id}/deals"): {
            "path_parameters": {"run_id": str(seeded.run_id)}
        },
        ("GET", "/v1/coverage-runs/{run_id}/compare/{other_run_id}"): {
            "path_parameters": {
                "run_id": str(seeded.run_id),
                "other_run_id": str(seeded.later_run_id),
            }
        },
        ("POST", "/v1/coverage-runs"): {
            "body": {"period_start": Q1[0].isoformat(), "period_end": Q1[1].isoformat()}
        },
        ("GET", "/v1/coverage/history"): {
            "query": {
                "principal_type": "USER",
                "principal_id": str(seeded.rep),
                "period_start": Q1[0].isoformat(),
                "period_end": Q1[1].isoformat(),
                "granularity": "day",
            }
        },
        ("GET", "/v1/coverage/same-point"): {
            "query": {
                "principal_type": "USER",
                "principal_id": str(seeded.rep),
                "as_of": Q1[1].isoformat(),
            }
        },
    }
    failures: list[str] = []
    calls = 0
    for operation in operations:
        label = (operation.method.upper(), operation.path)
        variants: list[tuple[GenerationMode, dict[str, Any]]] = [(GenerationMode.POSITIVE, {})]
        definition = paths[operation.path][operation.method.lower()]
        if definition.get("parameters") or definition.get("requestBody"):
            # Invalid requests exist only where there is something to get wrong.
            variants.append((GenerationMode.NEGATIVE, {}))
        if label in pinned:
            variants.append((GenerationMode.POSITIVE, pinned[label]))
        for mode, fixed in variants:
            strategy = operation.as_strategy(generation_mode=mode, **fixed)

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def check(case: schemathesis.Case[Any]) -> None:
                nonlocal calls
                calls += 1
                response = _call(case, live_server, auth)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                check()
            except Exception as exc:
                failures.append(f"{label} {mode.value} {sorted(fixed)}: {exc}")

    assert not failures, "\n\n".join(failures)
    assert calls >= len(operations) * 2, "hypothesis generated (almost) nothing"
    # The generated requests were authenticated: the tenant has more runs than it started with.
    with httpx.Client(base_url=live_server, headers=auth, timeout=30) as client:
        listed = client.get("/v1/coverage-runs", params={"limit": 3})
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 3


def test_real_responses_conform_to_their_response_schemas(live_server: str, seeded: Seeded) -> None:
    """What each JSON read and the run's POST actually send validates against the
    schema the API declares for it (the deals and the comparison included, which are
    returned through their response models), and carries the fields it documents."""
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json", timeout=30)
    auth = {"Authorization": f"Bearer {seeded.key}"}
    run = {"run_id": str(seeded.run_id)}
    pair = {**run, "other_run_id": str(seeded.later_run_id)}
    who = {"principal_type": "USER", "principal_id": str(seeded.rep)}
    period = {"period_start": Q1[0].isoformat(), "period_end": Q1[1].isoformat()}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/coverage-runs/{run_id}", {"path_parameters": run}),
        ("GET", "/v1/coverage-runs/{run_id}/deals",
         {"path_parameters": run, "query": {"limit": 2}}),
        ("GET", "/v1/coverage-runs/{run_id}/deals", {"path_parameters": run, "query": who}),
        ("GET", "/v1/coverage-runs/{run_id}/compare/{other_run_id}",
         {"path_parameters": pair, "query": {"deals": True}}),
        ("GET", "/v1/coverage-runs", {"query": {"limit": 2}}),
        ("GET", "/v1/coverage/history", {"query": {**who, **period}}),
        ("GET", "/v1/coverage/same-point", {"query": {**who, "as_of": Q1[1].isoformat()}}),
        ("GET", "/v1/periods", {}),
        ("POST", "/v1/coverage-runs", {"body": period, "media_type": "application/json"}),
    ]  # fmt: skip
    seen: dict[tuple[str, str], Any] = {}
    for method, path, parts in cases:
        operation = schema[path][method]
        case = operation.Case(**parts)
        response = case.call(base_url=live_server, headers=auth, timeout=30)
        assert response.status_code in (200, 201), (method, path, response.text)
        case.validate_response(response, checks=[response_schema_conformance])
        seen[(method, path)] = response.json()
    page = seen[("GET", "/v1/coverage-runs/{run_id}/deals")]
    assert page["deals"]
    assert set(page["deals"][0]) >= {"class", "reporting_amount", "deal_pipeline_name"}
    comparison = seen[("GET", "/v1/coverage-runs/{run_id}/compare/{other_run_id}")]
    assert comparison["rows"]
    assert comparison["deals"] is not None
    assert comparison["run_b"]["period_label"].startswith("2026-Q1 · ")
    document = seen[("GET", "/v1/coverage-runs/{run_id}")]
    assert document["run_id"] == str(seeded.run_id)
    assert sorted(row["order"] for row in document["rows"]) == list(range(len(document["rows"])))
    assert [row["order"] for row in document["rows"]] == sorted(
        r["order"] for r in document["rows"]
    )
    created = seen[("POST", "/v1/coverage-runs")]
    assert set(created) == {"run_id", "run", "exclusions", "totals", "rows"} == set(document)
