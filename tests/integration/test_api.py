"""The HTTP API over real HTTP: a uvicorn server on a loopback port (``live_server``),
driven with httpx, with data inserted straight into the database (``tests.factory``)
and amounts checked against the independent oracle (``tests.oracle``)."""

from __future__ import annotations

import base64
import concurrent.futures
import csv
import datetime as dt
import io
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NoReturn

import httpx
import psycopg
import pytest

from pipeline_coverage.apikeys import create_api_key, key_hash, revoke_api_key
from pipeline_coverage.config import WebSettings
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.web.app import create_app
from tests.conftest import serving
from tests.factory import Crm
from tests.oracle import Expected, Oracle
from tests.worlds import Q1, World

PERIOD = {"period_start": "2026-01-01", "period_end": "2026-04-01"}
PERIOD_Q2 = {"period_start": "2026-04-01", "period_end": "2026-07-01"}
PROBLEM = "application/problem+json"
AMOUNT = re.compile(r"^\d+(\.\d+)?$")
AMOUNT_FIELDS = ("target_amount", "open_amount", "coverage_ratio")
#: The CSV header: the run's identity, the row's, every metric of SPEC.md §8 by its
#: name (the registry), and the row's flags.
CSV_HEADER = [
    "run_id", "tenant_id", "period_start", "period_end", "principal_type", "principal_id",
    "principal_name", "pipeline_id", "pipeline_name", *NAMES, "flags", "status", "band",
]  # fmt: skip

Json = dict[str, Any]


# --- helpers -------------------------------------------------------------------------


def loads_exact(text: str) -> Any:
    """JSON where a number with a fraction or exponent (a float) is an error."""

    def refuse(literal: str) -> NoReturn:
        raise AssertionError(f"a JSON float in the response: {literal}")

    return json.loads(text, parse_float=refuse)


def body_of(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    document = loads_exact(response.text)
    assert isinstance(document, dict)
    return document


def problem_of(response: httpx.Response, status: int) -> Json:
    """An RFC 9457 problem document with the given status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    document = loads_exact(response.text)
    assert isinstance(document, dict)
    assert document["status"] == status
    assert isinstance(document["type"], str)
    assert document["type"]
    assert isinstance(document["title"], str)
    assert document["title"]
    assert isinstance(document["detail"], str)
    assert document["detail"]
    assert document["instance"] == response.request.url.path
    return document


def invalid_fields(response: httpx.Response) -> set[str]:
    """The fields a 422 problem document names in its ``errors``."""
    document = problem_of(response, 422)
    errors = document["errors"]
    assert isinstance(errors, list)
    assert errors
    for error in errors:
        assert set(error) == {"field", "message"}
        assert isinstance(error["message"], str)
        assert error["message"]
    return {error["field"] for error in errors}


def amount(value: object) -> Decimal | None:
    """A decimal string from the API (never a JSON number) as a Decimal."""
    if value is None:
        return None
    assert isinstance(value, str), f"an amount that is not a string: {value!r}"
    assert AMOUNT.fullmatch(value), value
    return Decimal(value)


def triple(row: Json) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    return amount(row["target_amount"]), amount(row["open_amount"]), amount(row["coverage_ratio"])


def expected_triple(expected: Expected) -> tuple[Decimal | None, Decimal, Decimal | None]:
    return expected.target_amount, expected.open_amount, expected.coverage_ratio


def run_count(conn: psycopg.Connection[Any], tenant: uuid.UUID | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dyno_crm.report_run"
        " WHERE %(tenant)s::uuid IS NULL OR tenant_id = %(tenant)s::uuid",
        {"tenant": tenant},
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def post_run(api: httpx.Client, world: World, body: Json, **headers: str) -> Json:
    response = api.post("/v1/coverage-runs", json=body, headers={**world.auth, **headers})
    return body_of(response, 201)


def single(world: World, who: uuid.UUID, kind: str = "USER", period: Json = PERIOD) -> Json:
    return {**period, "principal_type": kind, "principal_id": str(who)}


def list_all(api: httpx.Client, world: World, **params: str | int) -> list[Json]:
    """Every page of ``GET /v1/coverage-runs``, concatenated."""
    items: list[Json] = []
    cursor: str | None = None
    for _ in range(100):
        query: dict[str, str | int] = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        page = body_of(api.get("/v1/coverage-runs", params=query, headers=world.auth), 200)
        assert set(page) == {"items", "next_cursor"}
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert isinstance(cursor, str)
        assert cursor
    raise AssertionError("pagination does not end")


# --- health --------------------------------------------------------------------------


def test_healthz_needs_no_key(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert body_of(response, 200) == {"status": "ok"}


def test_readyz_reports_the_database_reachable(api: httpx.Client) -> None:
    response = api.get("/readyz")
    assert body_of(response, 200) == {"status": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(web_settings: WebSettings) -> None:
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        url = f"postgresql://postgres@127.0.0.1:{port}/nothing?connect_timeout=1"
        with serving(create_app(url, web_settings, open_pool=False)) as base_url:
            ready = httpx.get(f"{base_url}/readyz", timeout=30)
            alive = httpx.get(f"{base_url}/healthz", timeout=30)
    assert problem_of(ready, 503)["detail"] == "the database is not reachable"
    assert body_of(alive, 200) == {"status": "ok"}


def test_unknown_routes_and_methods_are_problem_documents(api: httpx.Client, world: World) -> None:
    assert problem_of(api.get("/v1/nothing-here", headers=world.auth), 404)["status"] == 404
    refused = api.delete("/v1/coverage-runs", headers=world.auth)
    assert problem_of(refused, 405)["status"] == 405
    # Allow names every method of the path (it is listed by GET and created by POST).
    assert refused.headers["Allow"] == "GET, HEAD, POST"


def test_head_is_answered_as_get_without_a_body(api: httpx.Client, world: World) -> None:
    for path, headers in (("/healthz", {}), ("/v1/coverage-runs", world.auth)):
        got, head = api.get(path, headers=headers), api.head(path, headers=headers)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == got.headers["content-type"]
    assert api.head("/v1/coverage-runs").status_code == 401  # no key: as GET


def test_request_id_is_echoed(api: httpx.Client) -> None:
    response = api.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
    assert response.headers["x-request-id"] == "trace-me-42"
    generated = api.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


# --- authentication ------------------------------------------------------------------


def assert_unauthorized(response: httpx.Response) -> None:
    problem_of(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Bearer", id="bearer-without-key"),
        pytest.param("Token {key}", id="other-scheme-with-the-key"),
        pytest.param("{key}", id="key-without-scheme"),
        pytest.param("Bearerpcov_x", id="no-space"),
        pytest.param(f"Bearer pcov_{uuid.uuid4().hex}_xxx", id="unknown-well-formed-key"),
        pytest.param("Bearer pcov_{tenant_hex}_not-the-secret", id="right-tenant-wrong-secret"),
        pytest.param("Bearer garbage", id="garbage"),
        pytest.param("Bearer pcov_zzzz_secret", id="bad-tenant-part"),
        pytest.param("Bearer {key}x", id="key-with-extra-character"),
    ],
)
def test_requests_without_a_valid_key_are_401(
    api: httpx.Client, world: World, authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(key=world.key, tenant_hex=world.tenant.hex)
    assert_unauthorized(api.get("/v1/coverage-runs", headers=headers))
    # The same key is good with the right header.
    assert api.get("/v1/coverage-runs", headers=world.auth).status_code == 200


def test_every_v1_operation_requires_a_key(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    run_id = post_run(api, world, PERIOD)["run_id"]
    history = {**PERIOD, "principal_type": "USER", "principal_id": str(world.ann)}
    assert_unauthorized(api.get("/v1/coverage-runs"))
    assert_unauthorized(api.get(f"/v1/coverage-runs/{run_id}"))
    assert_unauthorized(api.get(f"/v1/coverage-runs/{run_id}", headers={"Accept": "text/csv"}))
    assert_unauthorized(api.get("/v1/coverage/history", params=history))
    assert_unauthorized(api.get("/v1/periods"))
    assert_unauthorized(api.post("/v1/coverage-runs", json=PERIOD))
    assert_unauthorized(api.get("/session"))
    assert run_count(conn) == 1, "an unauthenticated POST created a run"


def test_a_revoked_key_is_401_at_once(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    _, spare = create_api_key(conn, world.tenant, "spare")
    assert body_of(api.get("/v1/coverage-runs", headers=world.auth), 200)["items"] == []

    revoked = revoke_api_key(conn, world.key_id, world.tenant)
    assert revoked.revoked_at is not None

    assert_unauthorized(api.get("/v1/coverage-runs", headers=world.auth))
    assert_unauthorized(api.post("/v1/coverage-runs", json=PERIOD, headers=world.auth))
    assert run_count(conn) == 0
    # The tenant's other key still works.
    spare_auth = {"Authorization": f"Bearer {spare}"}
    assert api.get("/v1/coverage-runs", headers=spare_auth).status_code == 200


# --- creating runs -------------------------------------------------------------------


def test_single_run_is_201_with_the_oracle_amounts_as_strings(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    response = api.post("/v1/coverage-runs", json=single(world, world.ann), headers=world.auth)
    created = body_of(response, 201)
    assert set(created) == {"run_id", "run", "exclusions", "totals", "rows"}
    run_id = uuid.UUID(created["run_id"])
    run = created["run"]
    assert uuid.UUID(run["run_id"]) == run_id
    assert uuid.UUID(run["tenant_id"]) == world.tenant
    assert run["tenant_name"] == world.name
    assert run["report_type"] == "PIPELINE_COVERAGE"
    assert (run["period_start"], run["period_end"]) == (
        PERIOD["period_start"],
        PERIOD["period_end"],
    )
    assert run["parameters"]["mode"] == "single"
    assert run["row_count"] == 1
    assert "Idempotent-Replayed" not in response.headers

    [row] = created["rows"]
    assert row["principal_type"] == "USER"
    assert uuid.UUID(row["principal_id"]) == world.ann
    assert row["principal_name"] == "Acme Ann"
    assert row["pipeline_id"] is None
    assert row["pipeline_name"] is None
    expected = Oracle(conn, world.tenant).coverage(*Q1, "USER", world.ann)
    assert triple(row) == expected_triple(expected)
    # The scenario is not trivial: 1000.50 + 250.25 (assignee) + 99.99 against 1000 + 500.
    assert triple(row) == (Decimal("1500"), Decimal("1350.74"), Decimal("0.9005"))
    assert run_count(conn, world.tenant) == 1

    # The run reads back the same, with the principal's name.
    stored = body_of(api.get(f"/v1/coverage-runs/{run_id}", headers=world.auth), 200)
    assert stored["rows"] == created["rows"]
    assert stored["run"] == created["run"]


@pytest.mark.parametrize("kind", ["USER", "GROUP"])
def test_single_run_for_one_pipeline_matches_the_oracle(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any], kind: str
) -> None:
    who = world.ann if kind == "USER" else world.team
    body = {**single(world, who, kind), "pipeline_id": str(world.sales)}
    [row] = post_run(api, world, body)["rows"]
    assert uuid.UUID(row["pipeline_id"]) == world.sales
    assert row["pipeline_name"] == "Acme Sales"
    assert row["principal_name"] == world.names()[who]
    expected = Oracle(conn, world.tenant).coverage(*Q1, kind, who, world.sales)
    assert triple(row) == expected_triple(expected)
    assert expected.open_amount > 0


def test_batch_has_a_row_per_active_user_and_group(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    created = post_run(api, world, PERIOD)
    assert created["run"]["parameters"]["mode"] == "batch"
    rows = {(row["principal_type"], uuid.UUID(row["principal_id"])): row for row in created["rows"]}
    assert len(rows) == len(created["rows"]) == created["run"]["row_count"]
    expected_principals = {("USER", world.ann), ("USER", world.bob), ("GROUP", world.team)}
    assert set(rows) == expected_principals
    oracle = Oracle(conn, world.tenant)
    assert oracle.principals(*Q1) == expected_principals
    for (kind, who), row in rows.items():
        assert row["principal_name"] == world.names()[who]
        assert row["pipeline_id"] is None
        assert triple(row) == expected_triple(oracle.coverage(*Q1, kind, who)), (kind, who)
    # Nothing of the other tenant (same shape of data) leaks in.
    assert not {other.ann, other.bob, other.team, other.cid} & {who for _, who in rows}
    assert not any(row["principal_name"].startswith("Globex") for row in rows.values())


def test_batch_by_pipeline_has_a_row_per_principal_and_pipeline(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    created = post_run(api, world, {**PERIOD, "by_pipeline": True})
    keys = [
        (row["principal_type"], uuid.UUID(row["principal_id"]), uuid.UUID(row["pipeline_id"]))
        for row in created["rows"]
    ]
    principals = [("USER", world.ann), ("USER", world.bob), ("GROUP", world.team)]
    pipelines = [world.sales, world.renewals]
    assert sorted(keys) == sorted((k, w, p) for k, w in principals for p in pipelines)
    oracle = Oracle(conn, world.tenant)
    names = {world.sales: "Acme Sales", world.renewals: "Acme Renewals"}
    for row, (kind, who, pipeline) in zip(created["rows"], keys, strict=True):
        assert row["pipeline_name"] == names[pipeline]
        expected = oracle.coverage(*Q1, kind, who, pipeline)
        assert triple(row) == expected_triple(expected), (kind, who, pipeline)


def test_batch_for_one_pipeline_matches_the_oracle(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    created = post_run(api, world, {**PERIOD, "pipeline_id": str(world.renewals)})
    oracle = Oracle(conn, world.tenant)
    seen = set()
    for row in created["rows"]:
        kind, who = row["principal_type"], uuid.UUID(row["principal_id"])
        seen.add((kind, who))
        assert uuid.UUID(row["pipeline_id"]) == world.renewals
        assert triple(row) == expected_triple(oracle.coverage(*Q1, kind, who, world.renewals))
    assert seen == oracle.principals(*Q1, world.renewals)


# --- invalid input -------------------------------------------------------------------


BodyOf = Callable[[World], Json]


@pytest.mark.parametrize(
    ("make_body", "field"),
    [
        pytest.param(
            lambda w: {"period_start": "2026-04-01", "period_end": "2026-01-01"},
            "period_end",
            id="end-before-start",
        ),
        pytest.param(
            lambda w: {"period_start": "2026-04-01", "period_end": "2026-04-01"},
            "period_end",
            id="empty-period",
        ),
        pytest.param(
            lambda w: {**PERIOD, "period_start": "2026-02-30"}, "period_start", id="bad-date"
        ),
        pytest.param(
            lambda w: {**PERIOD, "period_end": "01/04/2026"}, "period_end", id="not-iso-date"
        ),
        pytest.param(lambda w: {"period_start": "2026-01-01"}, "period_end", id="missing-end"),
        pytest.param(
            lambda w: {**PERIOD, "principal_type": "USER", "principal_id": "not-a-uuid"},
            "principal_id",
            id="bad-principal-uuid",
        ),
        pytest.param(
            lambda w: {**PERIOD, "pipeline_id": "12345"}, "pipeline_id", id="bad-pipeline-uuid"
        ),
        pytest.param(
            lambda w: {**PERIOD, "principal_type": "USER"},
            "principal_id",
            id="type-without-id",
        ),
        pytest.param(
            lambda w: {**PERIOD, "principal_id": str(w.ann)},
            "principal_type",
            id="id-without-type",
        ),
        pytest.param(
            lambda w: {**single(w, w.team), "principal_type": "TEAM"},
            "principal_type",
            id="type-team",
        ),
        pytest.param(
            lambda w: {**single(w, w.ann), "by_pipeline": True},
            "by_pipeline",
            id="by-pipeline-with-principal",
        ),
        pytest.param(
            lambda w: {**PERIOD, "by_pipeline": "sometimes"}, "by_pipeline", id="by-pipeline-text"
        ),
        pytest.param(lambda w: {**PERIOD, "colour": "red"}, "colour", id="unknown-field"),
        pytest.param(lambda w: {**PERIOD, "by_pipeline": "yes"}, "by_pipeline", id="flag-yes"),
        pytest.param(lambda w: {**PERIOD, "by_pipeline": 1}, "by_pipeline", id="flag-1"),
        pytest.param(lambda w: {**PERIOD, "period_start": 0}, "period_start", id="date-0"),
        pytest.param(
            lambda w: {**PERIOD, "period_end": "2026-04-01T00:00:00"},
            "period_end",
            id="datetime-not-date",
        ),
    ],
)
def test_invalid_run_request_is_422_naming_the_field(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any], make_body: BodyOf, field: str
) -> None:
    response = api.post("/v1/coverage-runs", json=make_body(world), headers=world.auth)
    assert field in invalid_fields(response)
    assert field in problem_of(response, 422)["detail"]
    assert run_count(conn) == 0


def test_a_body_that_is_not_json_is_422(api: httpx.Client, world: World) -> None:
    response = api.post(
        "/v1/coverage-runs",
        content=b"period_start=2026-01-01",
        headers={**world.auth, "Content-Type": "application/json"},
    )
    assert invalid_fields(response) == {"body"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"cursor": "not-a-cursor"}, "cursor", id="garbage-cursor"),
        pytest.param(
            {"cursor": base64.urlsafe_b64encode(b"yesterday|nobody").decode()},
            "cursor",
            id="forged-cursor",
        ),
        pytest.param({"cursor": "x" * 201}, "cursor", id="long-cursor"),
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 201}, "limit", id="limit-201"),
        pytest.param({"limit": "many"}, "limit", id="limit-text"),
        pytest.param({"mode": "everything"}, "mode", id="bad-mode"),
        pytest.param({"period_start": "2026-01-01"}, "period_end", id="start-without-end"),
        pytest.param({**PERIOD, "period_start": "2026-13-01"}, "period_start", id="bad-date"),
    ],
)
def test_invalid_list_query_is_422_naming_the_field(
    api: httpx.Client, world: World, params: dict[str, str | int], field: str
) -> None:
    response = api.get("/v1/coverage-runs", params=params, headers=world.auth)
    assert field in invalid_fields(response)


def test_limit_bounds_are_inclusive(api: httpx.Client, world: World) -> None:
    for limit in (1, 200):
        response = api.get("/v1/coverage-runs", params={"limit": limit}, headers=world.auth)
        assert body_of(response, 200)["items"] == []


def test_bad_run_id_is_422(api: httpx.Client, world: World) -> None:
    response = api.get("/v1/coverage-runs/not-a-uuid", headers=world.auth)
    assert invalid_fields(response) == {"run_id"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"principal_type": "TEAM"}, "principal_type", id="type-team"),
        pytest.param({"principal_id": "nope"}, "principal_id", id="bad-uuid"),
        pytest.param({"period_end": "2025-12-31"}, "period_end", id="end-before-start"),
        pytest.param({"period_start": "someday"}, "period_start", id="bad-date"),
        pytest.param({"pipeline_id": "nope"}, "pipeline_id", id="bad-pipeline"),
    ],
)
def test_invalid_history_query_is_422_naming_the_field(
    api: httpx.Client, world: World, change: dict[str, str], field: str
) -> None:
    params = {**PERIOD, "principal_type": "USER", "principal_id": str(world.ann), **change}
    response = api.get("/v1/coverage/history", params=params, headers=world.auth)
    assert field in invalid_fields(response)


@pytest.mark.parametrize(
    "missing", ["principal_type", "principal_id", "period_start", "period_end"]
)
def test_history_requires_every_parameter(api: httpx.Client, world: World, missing: str) -> None:
    params = {**PERIOD, "principal_type": "USER", "principal_id": str(world.ann)}
    del params[missing]
    response = api.get("/v1/coverage/history", params=params, headers=world.auth)
    assert invalid_fields(response) == {missing}


def test_unknown_principal_or_pipeline_is_422_naming_the_field(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    """A body naming a principal or pipeline the tenant does not have is invalid input:
    422 naming the field; one of another tenant is answered exactly like a random id."""

    def attempt(body: Json) -> Json:
        response = api.post("/v1/coverage-runs", json=body, headers=world.auth)
        document = problem_of(response, 422)
        assert [e["field"] for e in document["errors"]] == [document["detail"].split(":")[0]]
        return document

    def shape(document: Json, *ids: uuid.UUID) -> Json:
        text = json.dumps(document)
        for value in ids:
            text = text.replace(str(value), "<id>")
        shaped: Json = json.loads(text)
        return shaped

    stranger = uuid.uuid4()
    unknown_user = attempt(single(world, stranger))
    assert unknown_user["detail"].startswith("principal_id: ")
    foreign_user = attempt(single(world, other.ann))
    assert shape(foreign_user, other.ann) == shape(unknown_user, stranger)

    unknown_group = attempt(single(world, stranger, "GROUP"))
    assert unknown_group["detail"].startswith("principal_id: ")
    foreign_group = attempt(single(world, other.team, "GROUP"))
    assert shape(foreign_group, other.team) == shape(unknown_group, stranger)
    # A user id is not a group id.
    assert attempt(single(world, world.ann, "GROUP"))["detail"].startswith("principal_id: ")

    unknown_pipeline = attempt({**PERIOD, "pipeline_id": str(stranger)})
    assert unknown_pipeline["detail"].startswith("pipeline_id: ")
    foreign_pipeline = attempt({**PERIOD, "pipeline_id": str(other.sales)})
    assert shape(foreign_pipeline, other.sales) == shape(unknown_pipeline, stranger)
    foreign_in_single = attempt({**single(world, world.ann), "pipeline_id": str(other.sales)})
    assert foreign_in_single["detail"].startswith("pipeline_id: ")

    for document in (foreign_user, foreign_group, foreign_pipeline, foreign_in_single):
        assert str(other.tenant) not in document["detail"]
        assert other.name not in document["detail"]
    assert run_count(conn) == 0


# --- tenant isolation ----------------------------------------------------------------


def test_another_tenants_run_is_404_exactly_like_a_missing_one(
    api: httpx.Client, world: World, other: World
) -> None:
    theirs = uuid.UUID(post_run(api, other, single(other, other.ann))["run_id"])
    missing = uuid.uuid4()

    def answer(run_id: uuid.UUID, accept: str) -> Json:
        response = api.get(f"/v1/coverage-runs/{run_id}", headers={**world.auth, "Accept": accept})
        document = problem_of(response, 404)
        return {
            **document,
            "detail": document["detail"].replace(str(run_id), "<id>"),
            "instance": document["instance"].replace(str(run_id), "<id>"),
        }

    for accept in ("application/json", "text/csv"):
        assert answer(theirs, accept) == answer(missing, accept)
    # And the owner does see it.
    assert body_of(api.get(f"/v1/coverage-runs/{theirs}", headers=other.auth), 200)["rows"]


def test_lists_never_show_another_tenants_runs(
    api: httpx.Client, world: World, other: World
) -> None:
    mine = [post_run(api, world, PERIOD)["run_id"]]
    theirs = [post_run(api, other, PERIOD)["run_id"]]
    mine.append(post_run(api, world, single(world, world.bob))["run_id"])
    theirs.append(post_run(api, other, single(other, other.bob))["run_id"])

    listed = list_all(api, world, limit=1)
    assert [item["run_id"] for item in listed] == mine[::-1]
    assert {item["tenant_id"] for item in listed} == {str(world.tenant)}
    for mode in ("single", "batch"):
        ids = {item["run_id"] for item in list_all(api, world, mode=mode)}
        assert ids
        assert not ids & set(theirs)
    assert {item["run_id"] for item in list_all(api, other)} == set(theirs)


def test_history_of_another_tenants_principal_is_empty(
    api: httpx.Client, world: World, other: World
) -> None:
    post_run(api, other, single(other, other.ann))
    post_run(api, other, PERIOD)
    params = {**PERIOD, "principal_type": "USER", "principal_id": str(other.ann)}
    theirs = body_of(api.get("/v1/coverage/history", params=params, headers=other.auth), 200)
    assert len(theirs["points"]) == 2
    seen_by_me = body_of(api.get("/v1/coverage/history", params=params, headers=world.auth), 200)
    assert seen_by_me["points"] == []


def test_a_key_cannot_create_runs_for_another_tenants_principals(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    bodies = [
        single(other, other.ann),
        single(other, other.team, "GROUP"),
        {**PERIOD, "pipeline_id": str(other.sales)},
        {**PERIOD, "pipeline_id": str(other.sales), "by_pipeline": True},
    ]
    for body in bodies:
        response = api.post("/v1/coverage-runs", json=body, headers=world.auth)
        problem_of(response, 422)
    assert run_count(conn) == 0


# --- listing -------------------------------------------------------------------------


def test_list_is_newest_first_and_pages_cover_every_run_once(
    api: httpx.Client, world: World, other: World
) -> None:
    created = []
    for body in (
        single(world, world.ann),
        PERIOD,
        single(world, world.team, "GROUP"),
        PERIOD_Q2,
        {**PERIOD, "by_pipeline": True},
    ):
        created.append(post_run(api, world, body)["run_id"])
        post_run(api, other, PERIOD)  # interleaved noise of another tenant

    pages = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = body_of(api.get("/v1/coverage-runs", params=params, headers=world.auth), 200)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert pages[-1]["next_cursor"] is None
    listed = [item["run_id"] for page in pages for item in page["items"]]
    assert listed == created[::-1]
    stamps = [
        dt.datetime.fromisoformat(item["generated_at"]) for page in pages for item in page["items"]
    ]
    assert stamps == sorted(stamps, reverse=True)
    # Headers carry row counts; the list itself has no rows.
    first = pages[0]["items"][0]
    assert first["row_count"] == 6
    assert "rows" not in first
    # The whole list on one page has no next cursor either.
    whole = body_of(api.get("/v1/coverage-runs", params={"limit": 5}, headers=world.auth), 200)
    assert [item["run_id"] for item in whole["items"]] == listed
    assert whole["next_cursor"] is None


def test_list_filters_by_period_and_mode(api: httpx.Client, world: World) -> None:
    single_q1 = post_run(api, world, single(world, world.ann))["run_id"]
    batch_q1 = post_run(api, world, PERIOD)["run_id"]
    single_q2 = post_run(api, world, single(world, world.bob, period=PERIOD_Q2))["run_id"]
    batch_q2 = post_run(api, world, PERIOD_Q2)["run_id"]
    by_pipeline_q1 = post_run(api, world, {**PERIOD, "by_pipeline": True})["run_id"]

    def ids(**params: str | int) -> list[str]:
        return [item["run_id"] for item in list_all(api, world, **params)]

    assert ids() == [by_pipeline_q1, batch_q2, single_q2, batch_q1, single_q1]
    assert ids(**PERIOD) == [by_pipeline_q1, batch_q1, single_q1]
    assert ids(**PERIOD_Q2) == [batch_q2, single_q2]
    assert ids(mode="single") == [single_q2, single_q1]
    assert ids(mode="batch") == [by_pipeline_q1, batch_q2, batch_q1]
    assert ids(mode="batch", **PERIOD) == [by_pipeline_q1, batch_q1]
    assert ids(mode="single", limit=1, **PERIOD_Q2) == [single_q2]
    assert ids(mode="batch", limit=1) == [by_pipeline_q1, batch_q2, batch_q1]
    assert ids(period_start="2026-01-01", period_end="2026-07-01") == []
    for item in list_all(api, world, mode="single"):
        assert item["parameters"]["mode"] == "single"


# --- reading a run as CSV ------------------------------------------------------------


def test_a_run_whose_target_misses_its_period_is_served_with_the_exclusion(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    """A target overlapping the period without matching it flags the row, and the
    exclusions report says so: that line counts rows and has no amount, and the run
    is still served (it was a 500 when its message formatted the missing amount)."""
    Crm(conn).target(world.tenant, "USER", world.bob, dt.date(2026, 2, 1), dt.date(2026, 5, 1), "9")
    created = api.post("/v1/coverage-runs", json=PERIOD, headers=world.auth)
    assert created.status_code == 201, created.text
    run = created.json()
    [bob] = [row for row in run["rows"] if row["principal_id"] == str(world.bob)]
    assert bob["flags"] == ["TARGET_PERIOD_MISMATCH"]
    assert bob["target_amount"] is None
    [mismatch] = [item for item in run["exclusions"] if item["flag"] == "TARGET_PERIOD_MISMATCH"]
    assert mismatch["count"] == 1
    assert mismatch["amount"] is None
    assert mismatch["message"].startswith("1 row has no target for exactly this period")
    read = api.get(f"/v1/coverage-runs/{run['run_id']}", headers=world.auth)
    assert read.status_code == 200
    assert read.json()["exclusions"] == run["exclusions"]


def test_a_run_as_csv(api: httpx.Client, world: World) -> None:
    created = post_run(api, world, {**PERIOD, "by_pipeline": True})
    run_id = created["run_id"]
    response = api.get(f"/v1/coverage-runs/{run_id}", headers={**world.auth, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/csv"
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == CSV_HEADER
    records = list(reader)
    assert len(records) == len(created["rows"]) == 6
    for record, row in zip(records, created["rows"], strict=True):
        assert record["run_id"] == run_id
        assert record["tenant_id"] == str(world.tenant)
        assert (record["period_start"], record["period_end"]) == ("2026-01-01", "2026-04-01")
        for column in ("principal_type", "principal_id", "principal_name", "pipeline_id"):
            assert record[column] == row[column], column
        for column in AMOUNT_FIELDS:
            assert record[column] == (row[column] or ""), column
        assert (record["status"], record["band"]) == (row["status"], row["band"] or "")

    # Asking for JSON (or anything else) gives JSON.
    as_json = api.get(f"/v1/coverage-runs/{run_id}", headers={**world.auth, "Accept": "*/*"})
    assert body_of(as_json, 200)["rows"] == created["rows"]


def test_a_run_has_an_etag_and_answers_if_none_match_with_304(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    run_id = post_run(api, world, PERIOD)["run_id"]
    url = f"/v1/coverage-runs/{run_id}"
    as_json = api.get(url, headers=world.auth)
    assert as_json.status_code == 200
    etag = as_json.headers["etag"]
    assert re.fullmatch(r'"[^"]+"', etag)
    # Never stored by a shared cache: it is one tenant's data.
    assert as_json.headers["cache-control"].startswith("private")
    assert "Authorization" in as_json.headers["vary"]
    assert (
        api.get(url, headers={**world.auth, "If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    )
    assert "accept" in as_json.headers["vary"].lower()

    unchanged = api.get(url, headers={**world.auth, "If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    stale = api.get(url, headers={**world.auth, "If-None-Match": '"something-else"'})
    assert body_of(stale, 200) == body_of(as_json, 200)

    # CSV is another representation, with another tag.
    as_csv = api.get(url, headers={**world.auth, "Accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["etag"] != etag
    json_tag_for_csv = api.get(
        url, headers={**world.auth, "Accept": "text/csv", "If-None-Match": etag}
    )
    assert json_tag_for_csv.status_code == 200
    assert json_tag_for_csv.text == as_csv.text

    # The tag opens nothing: another tenant still gets 404, a revoked key 401.
    problem_of(api.get(url, headers={**other.auth, "If-None-Match": etag}), 404)
    revoke_api_key(conn, world.key_id)
    assert_unauthorized(api.get(url, headers={**world.auth, "If-None-Match": etag}))


# --- history -------------------------------------------------------------------------


def test_history_follows_the_open_amount_across_runs(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    def set_amount(value: str) -> Expected:
        conn.execute(
            "UPDATE dyno_crm.deal SET amount = %s WHERE tenant_id = %s AND id = %s",
            (Decimal(value), world.tenant, world.big_deal),
        )
        conn.commit()
        return Oracle(conn, world.tenant).coverage(*Q1, "USER", world.ann)

    expected = [Oracle(conn, world.tenant).coverage(*Q1, "USER", world.ann)]
    runs = [post_run(api, world, single(world, world.ann))["run_id"]]
    expected.append(set_amount("2000.50"))
    runs.append(post_run(api, world, PERIOD)["run_id"])  # a batch row counts as well
    post_run(api, world, single(world, world.ann, period=PERIOD_Q2))  # another period
    pipeline_run = post_run(
        api, world, {**single(world, world.ann), "pipeline_id": str(world.sales)}
    )
    expected.append(set_amount("0"))
    runs.append(post_run(api, world, single(world, world.ann))["run_id"])

    params = {**PERIOD, "principal_type": "USER", "principal_id": str(world.ann)}
    history = body_of(api.get("/v1/coverage/history", params=params, headers=world.auth), 200)
    assert history["principal_type"] == "USER"
    assert uuid.UUID(history["principal_id"]) == world.ann
    assert (history["period_start"], history["period_end"]) == ("2026-01-01", "2026-04-01")
    points = history["points"]
    assert [point["run_id"] for point in points] == runs
    stamps = [dt.datetime.fromisoformat(point["generated_at"]) for point in points]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3
    assert [triple(point) for point in points] == [expected_triple(e) for e in expected]
    assert [amount(point["open_amount"]) for point in points] == [
        Decimal("1350.74"),
        Decimal("2350.74"),
        Decimal("350.24"),
    ]
    assert all(point["pipeline_id"] is None for point in points)

    # One pipeline's history has the pipeline run only.
    by_sales = body_of(
        api.get(
            "/v1/coverage/history",
            params={**params, "pipeline_id": str(world.sales)},
            headers=world.auth,
        ),
        200,
    )
    assert [point["run_id"] for point in by_sales["points"]] == [pipeline_run["run_id"]]
    assert triple(by_sales["points"][0]) == triple(pipeline_run["rows"][0])


def test_history_of_a_principal_without_runs_is_empty(api: httpx.Client, world: World) -> None:
    post_run(api, world, single(world, world.ann))
    params = {**PERIOD, "principal_type": "GROUP", "principal_id": str(world.ann)}
    history = body_of(api.get("/v1/coverage/history", params=params, headers=world.auth), 200)
    assert history["points"] == []


# --- idempotency ---------------------------------------------------------------------


def test_same_idempotency_key_and_body_replays_the_first_run(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    body = {**PERIOD, "by_pipeline": True}
    first = api.post(
        "/v1/coverage-runs", json=body, headers={**world.auth, "Idempotency-Key": "k-1"}
    )
    created = body_of(first, 201)
    assert "Idempotent-Replayed" not in first.headers
    # The same body spelled differently (key order, an explicit default) is the same body.
    replay_body = {"by_pipeline": True, "pipeline_id": None, **PERIOD}
    second = api.post(
        "/v1/coverage-runs", json=replay_body, headers={**world.auth, "Idempotency-Key": "k-1"}
    )
    replayed = body_of(second, 201)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert replayed["run_id"] == created["run_id"]
    assert replayed == created
    assert run_count(conn, world.tenant) == 1

    # Without the key, the same body makes a new run.
    assert post_run(api, world, body)["run_id"] != created["run_id"]
    assert run_count(conn, world.tenant) == 2


def test_same_idempotency_key_with_another_body_is_409(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    headers = {**world.auth, "Idempotency-Key": "k-2"}
    first = body_of(api.post("/v1/coverage-runs", json=PERIOD, headers=headers), 201)
    for body in (PERIOD_Q2, {**PERIOD, "by_pipeline": True}, single(world, world.ann)):
        conflict = problem_of(api.post("/v1/coverage-runs", json=body, headers=headers), 409)
        assert "Idempotency-Key" in conflict["detail"]
    assert run_count(conn, world.tenant) == 1
    # The key still replays its own request.
    again = api.post("/v1/coverage-runs", json=PERIOD, headers=headers)
    assert body_of(again, 201)["run_id"] == first["run_id"]


def test_a_failed_request_does_not_use_up_its_idempotency_key(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    headers = {**world.auth, "Idempotency-Key": "k-3"}
    body = single(world, uuid.uuid4())
    problem_of(api.post("/v1/coverage-runs", json=body, headers=headers), 422)
    assert run_count(conn) == 0
    created = api.post("/v1/coverage-runs", json=PERIOD, headers=headers)
    assert body_of(created, 201)["run"]["parameters"]["mode"] == "batch"
    assert "Idempotent-Replayed" not in created.headers


def test_idempotency_keys_are_per_tenant(
    api: httpx.Client, world: World, other: World, conn: psycopg.Connection[Any]
) -> None:
    mine = body_of(
        api.post("/v1/coverage-runs", json=PERIOD, headers={**world.auth, "Idempotency-Key": "k"}),
        201,
    )
    response = api.post(
        "/v1/coverage-runs", json=PERIOD, headers={**other.auth, "Idempotency-Key": "k"}
    )
    theirs = body_of(response, 201)
    assert "Idempotent-Replayed" not in response.headers
    assert theirs["run_id"] != mine["run_id"]
    assert theirs["run"]["tenant_id"] == str(other.tenant)
    # Another body under the same key is fine for the other tenant, too.
    response = api.post(
        "/v1/coverage-runs", json=PERIOD_Q2, headers={**other.auth, "Idempotency-Key": "k2"}
    )
    assert response.status_code == 201
    again = api.post(
        "/v1/coverage-runs", json=PERIOD, headers={**world.auth, "Idempotency-Key": "k"}
    )
    assert body_of(again, 201)["run_id"] == mine["run_id"]
    assert run_count(conn, world.tenant) == 1
    assert run_count(conn, other.tenant) == 2


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_idempotency_key_length_is_checked(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any], key: str
) -> None:
    response = api.post(
        "/v1/coverage-runs", json=PERIOD, headers={**world.auth, "Idempotency-Key": key}
    )
    assert invalid_fields(response) == {"Idempotency-Key"}
    assert run_count(conn) == 0


def test_concurrent_requests_with_one_idempotency_key_make_one_run(
    live_server: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    racers, rounds = 8, 3
    body = {**PERIOD, "by_pipeline": True}

    def race(key: str) -> list[httpx.Response]:
        start = threading.Barrier(racers)

        def one(_: int) -> httpx.Response:
            with httpx.Client(base_url=live_server, timeout=60) as client:
                client.get("/healthz").raise_for_status()  # connected before the start
                start.wait(timeout=30)
                return client.post(
                    "/v1/coverage-runs", json=body, headers={**world.auth, "Idempotency-Key": key}
                )

        with concurrent.futures.ThreadPoolExecutor(max_workers=racers) as pool:
            return list(pool.map(one, range(racers)))

    run_ids = set()
    for round_ in range(rounds):
        responses = race(f"raced-{round_}")
        documents = [body_of(response, 201) for response in responses]
        assert len({document["run_id"] for document in documents}) == 1
        replayed = [response.headers.get("Idempotent-Replayed") for response in responses]
        assert replayed.count("true") == racers - 1
        assert replayed.count(None) == 1
        assert len(documents[0]["rows"]) == 6
        run_ids.add(documents[0]["run_id"])
    assert len(run_ids) == rounds, "each key made its own run"
    assert run_count(conn) == rounds
    facts = conn.execute("SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact").fetchone()
    conn.commit()
    assert facts is not None
    assert facts[0] == 6 * rounds


# --- the dashboard's session ---------------------------------------------------------


SESSION_COOKIE = "pipeline_coverage_session"


def session_of(response: httpx.Response) -> Json:
    """``GET /session``: its coverage bands are plain JSON numbers (not amounts)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_sign_in_with_a_bad_key_is_401(api: httpx.Client, world: World) -> None:
    for key in ("garbage", f"pcov_{world.tenant.hex}_wrong", f"pcov_{uuid.uuid4().hex}_xxx"):
        response = api.post("/session", json={"api_key": key})
        problem_of(response, 401)
        assert "set-cookie" not in response.headers
    assert invalid_fields(api.post("/session", json={"api_key": ""})) == {"api_key"}
    assert invalid_fields(api.post("/session", json={"key": world.key})) >= {"api_key"}


def session_rows(conn: psycopg.Connection[Any], world: World) -> list[tuple[uuid.UUID, bool]]:
    """The tenant's server-side sessions: (id, ended)."""
    rows = conn.execute(
        "SELECT id, ended_at IS NOT NULL FROM dyno_crm.api_session WHERE tenant_id = %s"
        " ORDER BY created_at",
        (world.tenant,),
    ).fetchall()
    conn.rollback()
    return [(row[0], row[1]) for row in rows]


def test_session_cookie_signs_in_and_out(
    live_server: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as browser:
        signed_in = browser.post("/session", json={"api_key": world.key})
        assert signed_in.status_code == 204
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags
        assert "samesite=strict" in flags
        assert world.key not in cookie
        assert world.key.split("_", 2)[2] not in cookie, "the key's secret is in the cookie"
        assert browser.cookies.get(SESSION_COOKIE)
        # Signed, not encrypted: decoded, the payload must still not hold the key.
        payload = browser.cookies[SESSION_COOKIE].split(".")[0]
        decoded = base64.b64decode(payload + "=" * (-len(payload) % 4)).decode()
        assert world.key.split("_", 2)[2] not in decoded
        # It names a session kept on the server: no key, no hash of one.
        content = json.loads(decoded)
        assert set(content) == {"tenant_id", "session_id"}
        assert content["tenant_id"] == str(world.tenant)
        assert key_hash(world.key).hex() not in decoded
        assert session_rows(conn, world) == [(uuid.UUID(content["session_id"]), False)]

        answer = browser.get("/session")
        assert world.key not in answer.text
        session = session_of(answer)
        assert uuid.UUID(session["tenant_id"]) == world.tenant
        assert session["tenant_name"] == world.name
        assert (session["low"], session["healthy"]) == (1, 3)
        # The metrics the dashboard can show: every column of a row, headline first.
        assert [m["name"] for m in session["metrics"]] == list(NAMES)
        assert session["headline"][0] == "target_amount"
        assert set(session["headline"]) <= set(NAMES)
        # It opens on a period with data: the world has no run yet and no target this
        # quarter, so the latest quarter with targets (Q2 2026) rather than an empty one.
        assert (session["period_start"], session["period_end"]) == (
            PERIOD_Q2["period_start"],
            PERIOD_Q2["period_end"],
        )

        # The /v1 API works with the cookie alone.
        created = body_of(browser.post("/v1/coverage-runs", json=PERIOD), 201)
        assert created["run"]["tenant_id"] == str(world.tenant)
        listed = body_of(browser.get("/v1/coverage-runs"), 200)
        assert [item["run_id"] for item in listed["items"]] == [created["run_id"]]

        kept = browser.cookies[SESSION_COOKIE]
        signed_out = browser.delete("/session")
        assert signed_out.status_code == 204
        assert not browser.cookies.get(SESSION_COOKIE)
        assert_unauthorized(browser.get("/session"))
        assert_unauthorized(browser.get("/v1/coverage-runs"))
        assert session_rows(conn, world) == [(uuid.UUID(content["session_id"]), True)]

    # Signing out ended the session on the server: a copy of the cookie taken before
    # is worth nothing, although its signature is still valid.
    with httpx.Client(base_url=live_server, timeout=30, cookies={SESSION_COOKIE: kept}) as copy:
        assert_unauthorized(copy.get("/session"))
        assert_unauthorized(copy.get("/v1/coverage-runs"))
        assert_unauthorized(copy.post("/v1/coverage-runs", json=PERIOD))


def test_session_ends_when_its_key_is_revoked(
    live_server: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as browser:
        assert browser.post("/session", json={"api_key": world.key}).status_code == 204
        assert browser.get("/v1/coverage-runs").status_code == 200
        revoke_api_key(conn, world.key_id)
        assert_unauthorized(browser.get("/v1/coverage-runs"))
        assert_unauthorized(browser.get("/session"))
    # Revoking the key ended its sessions on the server too.
    assert [ended for _, ended in session_rows(conn, world)] == [True]


def test_a_forged_session_cookie_is_401(live_server: str, world: World, other: World) -> None:
    """Swapping another tenant's live session into a signed cookie breaks the signature."""
    with httpx.Client(base_url=live_server, timeout=30) as theirs:
        assert theirs.post("/session", json={"api_key": other.key}).status_code == 204
        their_payload = theirs.cookies[SESSION_COOKIE].split(".")[0]
    with httpx.Client(base_url=live_server, timeout=30) as browser:
        assert browser.post("/session", json={"api_key": world.key}).status_code == 204
        value = browser.cookies[SESSION_COOKIE]
        _, *signature = value.split(".")
        forged = ".".join([their_payload, *signature])
    with httpx.Client(
        base_url=live_server, timeout=30, cookies={SESSION_COOKIE: forged}
    ) as attacker:
        assert_unauthorized(attacker.get("/session"))
        assert_unauthorized(attacker.get("/v1/coverage-runs"))
    with httpx.Client(base_url=live_server, timeout=30, cookies={SESSION_COOKIE: value}) as replay:
        assert session_of(replay.get("/session"))["tenant_id"] == str(world.tenant)


def test_bearer_key_wins_over_the_session_cookie(
    live_server: str, world: World, other: World
) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as browser:
        assert browser.post("/session", json={"api_key": world.key}).status_code == 204
        created = body_of(browser.post("/v1/coverage-runs", json=PERIOD, headers=other.auth), 201)
        assert created["run"]["tenant_id"] == str(other.tenant)
        assert body_of(browser.get("/v1/coverage-runs"), 200)["items"] == []


# --- the dashboard page --------------------------------------------------------------


def test_dashboard_page_and_its_assets_are_served_locally(api: httpx.Client) -> None:
    page = api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "coverage-chart" in page.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text, re.IGNORECASE)
    assert "/static/vendor/chart.umd.min.js" in urls
    for url in urls:
        assert not re.match(r"(?i)^(https?:)?//", url), f"an external asset: {url}"
        asset = api.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url

    chart = api.get("/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200
    assert "javascript" in chart.headers["content-type"]
    assert len(chart.content) > 10_000
    for script in ("/static/dashboard.js", "/static/dashboard.css", "/static/trends.js",
                   "/static/trends.css"):  # fmt: skip
        text = api.get(script).text
        assert not re.search(r"(?i)https?://", text), f"{script} loads something remote"


def test_missing_static_file_is_404(api: httpx.Client) -> None:
    assert api.get("/static/vendor/nothing.js").status_code == 404


def test_a_run_can_name_its_period_in_the_fiscal_calendar(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "UPDATE dyno_crm.tenant SET fiscal_year_start_month = 7 WHERE id = %s", (world.tenant,)
    )
    conn.commit()
    created = post_run(api, world, {"period": "FY2027-Q1"})
    assert (created["run"]["period_start"], created["run"]["period_end"]) == (
        "2026-07-01",
        "2026-10-01",
    )
    assert created["run"]["parameters"]["period"] == "FY2027-Q1"
    both = api.post("/v1/coverage-runs", json={**PERIOD, "period": "2026-Q1"}, headers=world.auth)
    assert invalid_fields(both) == {"period"}
    neither = api.post("/v1/coverage-runs", json={"by_pipeline": True}, headers=world.auth)
    assert invalid_fields(neither) == {"period_start"}
    bad = api.post("/v1/coverage-runs", json={"period": "Q5"}, headers=world.auth)
    assert invalid_fields(bad) == {"period"}


def test_the_drill_down_pages_in_json_and_csv_and_matches_its_schema(
    api: httpx.Client, world: World, conn: psycopg.Connection[Any]
) -> None:
    """Pages of ``GET .../deals`` (JSON by ``next_cursor``, CSV by its ``Link`` header)
    add up to the whole list, each deal once; the documents are what the OpenAPI schema
    says, a deal without a rate (no reporting amount) included."""
    from pipeline_coverage.web.schemas import DealPage

    conn.execute("UPDATE dyno_crm.deal SET currency = 'JPY' WHERE id = %s", (world.big_deal,))
    conn.commit()
    run = post_run(api, world, PERIOD)
    url = f"/v1/coverage-runs/{run['run_id']}/deals"
    whole = body_of(api.get(url, params={"limit": 10000}, headers=world.auth), 200)
    DealPage.model_validate(whole)
    everyone = [(d["principal_id"], d["pipeline_id"], d["deal_id"]) for d in whole["deals"]]
    assert len(everyone) == len(set(everyone)) > 3
    assert any(d["reporting_amount"] is None and "NO_RATE" in d["flags"] for d in whole["deals"])

    paged: list[tuple[str, str | None, str]] = []
    params: dict[str, str | int] = {"limit": 2}
    for _ in range(len(everyone)):
        page = body_of(api.get(url, params=params, headers=world.auth), 200)
        DealPage.model_validate(page)
        paged += [(d["principal_id"], d["pipeline_id"], d["deal_id"]) for d in page["deals"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    assert paged == everyone

    csv_rows: list[dict[str, str]] = []
    following: str | None = f"{url}?limit=2"
    while following is not None:
        response = api.get(following, headers={**world.auth, "Accept": "text/csv"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        csv_rows += list(csv.DictReader(io.StringIO(response.text)))
        following = response.links.get("next", {}).get("url")
        assert len(csv_rows) <= len(everyone)
    assert [(r["principal_id"], r["pipeline_id"] or None, r["deal_id"]) for r in csv_rows] == (
        everyone
    )
