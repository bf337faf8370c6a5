"""Full sync (``import --full``): the deals a source gave a tenant that its current
export no longer has are deleted, in the import's transaction, and stored runs keep
their snapshots."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from pipeline_coverage import get_run, run_deals, run_pipeline_coverage_batch
from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.load import load_tables
from pipeline_coverage.importing.upsert import delete_absent_deals
from tests.factory import Crm
from tests.integration.test_loader import dump, fetch

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))


class Tenant:
    """A tenant with a rep, a target and four open deals closing in Q1."""

    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        crm = Crm(conn)
        self.id = crm.tenant(name)
        self.rep = crm.user(self.id, f"{name} Rep")
        self.pipeline = crm.pipeline(self.id)
        self.stage = crm.stage(self.id, self.pipeline)
        crm.target(self.id, "USER", self.rep, *Q1, "1000")
        self.deals = [
            crm.deal(
                self.id, self.pipeline, self.stage, amount, dt.date(2026, 2, day), owner=self.rep
            )
            for day, amount in [(1, "100"), (2, "250.50"), (3, "40"), (4, "7")]
        ]
        conn.commit()


def deal_ids(db_url: str, tenant: uuid.UUID) -> set[uuid.UUID]:
    return {
        row[0]
        for row in fetch(db_url, "SELECT id FROM dyno_crm.deal WHERE tenant_id = %s", [tenant])
    }


def test_the_absent_candidates_are_deleted_and_nothing_else(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    acme = Tenant(conn, "Acme")
    kept, gone, other_source = acme.deals[:2], acme.deals[2:3], acme.deals[3]

    deleted = delete_absent_deals(conn, acme.id, kept=kept, candidates=[*kept, *gone])

    assert deleted == 1
    assert conn.info.transaction_status == TransactionStatus.IDLE  # committed
    # A deal of another source (not a candidate) stays, as do the kept ones.
    assert deal_ids(db_url, acme.id) == {*kept, other_source}
    assert delete_absent_deals(conn, acme.id, kept=kept, candidates=[*kept, *gone]) == 0


def test_another_tenants_deals_are_never_touched(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    acme, beta = Tenant(conn, "Acme"), Tenant(conn, "Beta")
    before = dump(db_url)

    # Beta's deals passed as Acme's candidates, none kept: not Acme's, so not deleted.
    assert delete_absent_deals(conn, acme.id, kept=[], candidates=beta.deals) == 0
    assert dump(db_url) == before

    assert delete_absent_deals(conn, acme.id, kept=[], candidates=[*acme.deals, *beta.deals]) == 4
    assert deal_ids(db_url, acme.id) == set()
    assert deal_ids(db_url, beta.id) == set(beta.deals)


def test_a_stored_run_is_unchanged_after_its_deals_are_deleted(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    acme = Tenant(conn, "Acme")
    run_id = run_pipeline_coverage_batch(conn, acme.id, *Q1)
    run = get_run(conn, run_id, acme.id)
    deals = run_deals(conn, run_id, acme.id)
    assert {deal.deal_id for deal in deals} == set(acme.deals)

    assert delete_absent_deals(conn, acme.id, kept=[], candidates=acme.deals) == 4

    assert deal_ids(db_url, acme.id) == set()
    assert get_run(conn, run_id, acme.id) == run
    assert run_deals(conn, run_id, acme.id) == deals
    assert run_deals(conn, run_id, acme.id, principal_type="USER", principal_id=acme.rep) == [
        deal for deal in deals if deal.principal_id == acme.rep
    ]


def test_a_load_and_the_delete_are_one_unit_of_work_in_the_callers_transaction(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    acme = Tenant(conn, "Acme")
    before = dump(db_url)
    renamed: list[object] = [
        acme.deals[0], acme.id, acme.pipeline, acme.stage, "Renamed", "100", "2026-02-01",
        None, acme.rep, None, None, None,
    ]  # fmt: skip
    export = {"deals.csv": [(2, renamed)]}
    columns = {"deals.csv": [
        "id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
        "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
        "assigned_group_id",
    ]}  # fmt: skip

    def full_sync(most: int) -> int:
        """Load the export and delete the rest, refusing to delete more than ``most``."""
        with conn.transaction():
            load_tables(conn, export, columns=columns, source="export.csv")
            deleted = delete_absent_deals(
                conn, acme.id, kept=[acme.deals[0]], candidates=acme.deals
            )
            if deleted > most:
                raise LoadError([f"export.csv: would delete {deleted} deals, more than {most}"])
        return deleted

    # Too many deletions (say, over --max-delete): the load is rolled back with them.
    with pytest.raises(LoadError, match="would delete 3 deals"):
        full_sync(2)
    assert dump(db_url) == before

    assert full_sync(3) == 3
    assert fetch(db_url, "SELECT id, name FROM dyno_crm.deal") == [(acme.deals[0], "Renamed")]
