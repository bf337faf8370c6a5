"""A small, hand-built world per tenant, for the HTTP API's tests: two active reps, an
inactive one, a team, two pipelines, deals on and around the period, and an API key."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from pipeline_coverage.apikeys import create_api_key
from tests.factory import Crm

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
Q2 = (dt.date(2026, 4, 1), dt.date(2026, 7, 1))


@dataclass(frozen=True)
class World:
    """One tenant: two active reps, an inactive one, a team, two pipelines, a key."""

    tenant: uuid.UUID
    name: str
    key: str
    key_id: uuid.UUID
    ann: uuid.UUID
    bob: uuid.UUID
    cid: uuid.UUID  # inactive, no deals, no target: never in a batch
    team: uuid.UUID
    sales: uuid.UUID
    renewals: uuid.UUID
    big_deal: uuid.UUID  # Ann's open Sales deal, whose amount the history test moves

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def names(self) -> dict[uuid.UUID, str]:
        prefix = self.name
        return {
            self.ann: f"{prefix} Ann",
            self.bob: f"{prefix} Bob",
            self.team: f"{prefix} Team",
        }


def build_world(conn: psycopg.Connection[Any], name: str) -> World:
    crm = Crm(conn)
    tenant = crm.tenant(name)
    ann = crm.user(tenant, f"{name} Ann")
    bob = crm.user(tenant, f"{name} Bob")
    cid = crm.user(tenant, f"{name} Cid", active=False)
    team = crm.group(tenant, f"{name} Team")
    crm.member(tenant, team, ann)
    crm.member(tenant, team, bob)
    sales = crm.pipeline(tenant, f"{name} Sales")
    renewals = crm.pipeline(tenant, f"{name} Renewals")
    sales_open = crm.stage(tenant, sales, "IN_PROGRESS")
    sales_won = crm.stage(tenant, sales, "DONE_SUCCESS")
    renewals_open = crm.stage(tenant, renewals, "NOT_STARTED")
    big_deal = crm.deal(
        tenant, sales, sales_open, "1000.50", dt.date(2026, 2, 1), owner=ann, owner_group=team
    )
    # No expected date: the close date decides; assigned to Ann, owned by Bob.
    crm.deal(
        tenant, sales, sales_open, "250.25", close=dt.date(2026, 3, 31), owner=bob, assignee=ann
    )
    crm.deal(tenant, sales, sales_won, "5000", expected=dt.date(2026, 2, 1), owner=ann)  # won
    crm.deal(tenant, renewals, renewals_open, "300", expected=dt.date(2026, 4, 1), owner=ann)  # Q2
    crm.deal(
        tenant,
        renewals,
        renewals_open,
        "99.99",
        dt.date(2026, 1, 1),
        owner=ann,
        assignee_group=team,
    )
    crm.deal(tenant, renewals, renewals_open, None, expected=dt.date(2026, 2, 2), owner=bob)
    crm.target(tenant, "USER", ann, *Q1, "1000")
    crm.target(tenant, "USER", ann, *Q1, "500", pipeline=sales)
    crm.target(tenant, "GROUP", team, *Q1, "3000")
    crm.target(tenant, "USER", bob, *Q2, "700")
    key, secret = create_api_key(conn, tenant, f"{name} key")
    return World(tenant, name, secret, key.id, ann, bob, cid, team, sales, renewals, big_deal)
