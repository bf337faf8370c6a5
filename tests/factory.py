"""Builds CRM data for tests with plain INSERTs (independent of the loader)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg


class Crm:
    """Inserts rows into dyno_crm and commits; every method returns the new id."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _insert(self, table: str, **values: Any) -> None:
        columns = ", ".join(values)
        marks = ", ".join(f"%({name})s" for name in values)
        self.conn.execute(
            f"INSERT INTO dyno_crm.{table} ({columns}) VALUES ({marks})",  # noqa: S608
            values,
        )
        self.conn.commit()

    def tenant(self, name: str = "Tenant") -> uuid.UUID:
        tenant_id = uuid.uuid4()
        self._insert("tenant", id=tenant_id, name=name)
        return tenant_id

    def user(self, tenant: uuid.UUID, name: str = "Rep", active: bool = True) -> uuid.UUID:
        user_id = uuid.uuid4()
        self._insert("crm_user", tenant_id=tenant, id=user_id, name=name,
                     email=f"{user_id.hex[:8]}@example.test", is_active=active)
        return user_id

    def group(self, tenant: uuid.UUID, name: str = "Team") -> uuid.UUID:
        group_id = uuid.uuid4()
        self._insert("crm_group", tenant_id=tenant, id=group_id, name=name)
        return group_id

    def member(self, tenant: uuid.UUID, group: uuid.UUID, user: uuid.UUID) -> None:
        self._insert("group_member", tenant_id=tenant, group_id=group, user_id=user)

    def pipeline(self, tenant: uuid.UUID, name: str = "Sales") -> uuid.UUID:
        pipeline_id = uuid.uuid4()
        self._insert("pipeline", tenant_id=tenant, id=pipeline_id, name=name)
        return pipeline_id

    def stage(self, tenant: uuid.UUID, pipeline: uuid.UUID, state: str = "IN_PROGRESS",
              name: str | None = None) -> uuid.UUID:
        stage_id = uuid.uuid4()
        self._insert("pipeline_stage", tenant_id=tenant, id=stage_id, pipeline_id=pipeline,
                     name=name or state.title(), stage_state=state, probability=50, position=1)
        return stage_id

    def deal(
        self,
        tenant: uuid.UUID,
        pipeline: uuid.UUID,
        stage: uuid.UUID,
        amount: Decimal | str | None,
        expected: dt.date | None = None,
        close: dt.date | None = None,
        owner: uuid.UUID | None = None,
        assignee: uuid.UUID | None = None,
        owner_group: uuid.UUID | None = None,
        assignee_group: uuid.UUID | None = None,
    ) -> uuid.UUID:
        deal_id = uuid.uuid4()
        self._insert(
            "deal", tenant_id=tenant, id=deal_id, pipeline_id=pipeline, stage_id=stage,
            name=f"Deal {deal_id.hex[:6]}",
            amount=Decimal(amount) if isinstance(amount, str) else amount,
            expected_close_date=expected, close_date=close,
            owned_by_user_id=owner, assigned_user_id=assignee,
            owned_by_group_id=owner_group, assigned_group_id=assignee_group,
        )
        return deal_id

    def target(
        self,
        tenant: uuid.UUID,
        principal_type: str,
        principal_id: uuid.UUID,
        start: dt.date,
        end: dt.date,
        amount: Decimal | str,
        pipeline: uuid.UUID | None = None,
    ) -> uuid.UUID:
        target_id = uuid.uuid4()
        self._insert(
            "sales_target", tenant_id=tenant, id=target_id, principal_type=principal_type,
            principal_id=principal_id, pipeline_id=pipeline, period_start=start,
            period_end=end, target_amount=Decimal(amount),
        )
        return target_id
