"""The drill-down's JSON is built by the database (``store.run_deals_json``): each deal's
object must be exactly what ``deal_values`` makes of ``run_deals``' row (SPEC names,
amounts as decimal strings, ISO dates, flags a list), in the same order, page by page,
and every page the API answers must be a valid ``DealPage`` — for a tenant with
currencies, missing rates, undated and amount-less deals, by pipeline and rolled up,
and for names holding quotes, backslashes, line breaks, control characters and
characters outside ASCII."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import run_deals, run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.render.values import deal_values
from pipeline_coverage.store import run_deals_json
from pipeline_coverage.web.schemas import DealPage
from tests.factory import random_tenant

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
INSIDE = dt.date(2026, 2, 10)
#: Names a JSON encoder must escape (or may pass through) and still read back exactly.
AWKWARD = (
    'Ann "The Closer" Roe',
    "back\\slash \\u0041 \\n",
    "line\r\nbreak\ttab",
    "bell\x07 esc\x1b[31m nul-ish\x01\x1f",
    "Zoë — Ünïcødé 日本語 🚀",
    "sep\u2028para\u2029",
    "</script><script>alert(1)</script>",
    "",
)


def as_values(conn: psycopg.Connection[Any], run: uuid.UUID, **where: Any) -> list[Any]:
    return [deal_values(deal) for deal in run_deals(conn, run, **where)]


def as_json(conn: psycopg.Connection[Any], run: uuid.UUID, **where: Any) -> list[Any]:
    return [json.loads(text) for text in run_deals_json(conn, run, **where)]


@pytest.mark.parametrize(
    ("by_pipeline", "rollup"), [(False, False), (True, False), (False, True)],
    ids=["plain", "by-pipeline", "rollup"],
)  # fmt: skip
def test_each_deal_object_is_deal_values_of_its_row(
    conn: psycopg.Connection[Any], by_pipeline: bool, rollup: bool
) -> None:
    tenant = random_tenant(conn, 61)
    random_tenant(conn, 62)  # another tenant's deals must not leak in
    run = run_pipeline_coverage_batch(
        conn, tenant, *Q1, as_of=INSIDE, by_pipeline=by_pipeline, rollup=rollup
    )
    expected = as_values(conn, run, tenant_id=tenant)
    assert len(expected) > 50, "the run has a drill-down worth comparing"
    got = as_json(conn, run, tenant_id=tenant)
    assert got == expected
    # The edge cases the objects carry: nulls, flags, another currency, no rate.
    assert any(deal["reporting_amount"] is None for deal in got), "a deal without a rate"
    assert any(deal["placed_on"] is None for deal in got), "an undated deal"
    assert any(deal["flags"] for deal in got)
    assert any(not deal["flags"] for deal in got)
    assert len({deal["currency"] for deal in got}) > 1
    if by_pipeline:
        assert all(deal["pipeline_id"] is not None for deal in got)

    # Pages, one principal at a time and across principals, continue alike.
    first = got[0]
    one = {"principal_type": first["principal_type"], "principal_id": first["principal_id"]}
    assert as_json(conn, run, tenant_id=tenant, **one) == as_values(
        conn, run, tenant_id=tenant, **one
    )
    middle = run_deals(conn, run, tenant, limit=len(expected) // 2)[-1]
    after = (middle.principal_type, middle.principal_id, middle.pipeline_id, middle.deal_id)
    assert as_json(conn, run, tenant_id=tenant, after=after, limit=7) == as_values(
        conn, run, tenant_id=tenant, after=after, limit=7
    )


def test_awkward_names_read_back_exactly_through_the_api(
    live_server: str, conn: psycopg.Connection[Any]
) -> None:
    """Every awkward name as a deal, stage and pipeline: the API's pages (3 deals each,
    so the cursor is taken from the database's objects) are valid DealPages holding the
    names exactly, and together they are the run's whole drill-down."""
    tenant = random_tenant(conn, 63)
    deals = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM dyno_crm.deal WHERE tenant_id = %s ORDER BY id", (tenant,)
        )
    ]
    names = {}
    for n, (deal, name) in enumerate(zip(deals, AWKWARD * len(deals), strict=False)):
        names[str(deal)] = f"{name} #{n}"
        conn.execute("UPDATE dyno_crm.deal SET name = %s WHERE id = %s", (names[str(deal)], deal))
    conn.execute(
        "UPDATE dyno_crm.pipeline_stage SET name = %s WHERE tenant_id = %s", (AWKWARD[2], tenant)
    )
    conn.execute(
        "UPDATE dyno_crm.pipeline SET name = %s WHERE tenant_id = %s", (AWKWARD[4], tenant)
    )
    conn.commit()
    run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    expected = as_values(conn, run, tenant_id=tenant)
    _, key = create_api_key(conn, tenant, "json")
    pages = 0
    got: list[Any] = []
    params = {"limit": "3"}
    with httpx.Client(
        base_url=live_server, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        while True:
            response = api.get(f"/v1/coverage-runs/{run}/deals", params=params)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            page = DealPage.model_validate_json(response.content)  # the contract's model
            document = response.json()
            assert document == json.loads(page.model_dump_json(by_alias=True))
            assert str(page.run_id) == str(run)
            got += document["deals"]
            pages += 1
            if page.next_cursor is None:
                break
            assert len(page.deals) == 3
            params = {"limit": "3", "cursor": page.next_cursor}
    assert pages > 3
    assert got == expected
    for deal in got:
        assert deal["deal_name"] == names[deal["deal_id"]]
        assert deal["stage_name"] == AWKWARD[2]
        assert deal["deal_pipeline_name"] == AWKWARD[4]
