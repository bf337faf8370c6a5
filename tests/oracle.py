"""An independent computation of pipeline coverage, in plain Python.

It reads the raw rows with ``SELECT *``-style queries and applies SPEC.md §1 and §5
rule by rule, so the report's SQL is checked against something that shares none of
its code.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

DONE = {"DONE_SUCCESS", "DONE_FAILED"}


@dataclass(frozen=True)
class Expected:
    target_amount: Decimal | None
    open_amount: Decimal
    coverage_ratio: Decimal | None


class Oracle:
    """A snapshot of one tenant's raw data, and the rules applied to it."""

    def __init__(self, conn: psycopg.Connection[Any], tenant: uuid.UUID) -> None:
        self.tenant = tenant
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id, stage_state FROM dyno_crm.pipeline_stage WHERE tenant_id = %s",
                (tenant,),
            )
            self.stage_state = dict(cur.fetchall())
            cur.execute(
                "SELECT pipeline_id, stage_id, amount, expected_close_date, close_date,"
                " owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id"
                " FROM dyno_crm.deal WHERE tenant_id = %s",
                (tenant,),
            )
            self.deals = cur.fetchall()
            cur.execute(
                "SELECT principal_type, principal_id, pipeline_id, period_start, period_end,"
                " target_amount FROM dyno_crm.sales_target WHERE tenant_id = %s",
                (tenant,),
            )
            self.targets = cur.fetchall()
            cur.execute(
                "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s AND is_active", (tenant,)
            )
            self.active_users = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT id FROM dyno_crm.crm_group WHERE tenant_id = %s", (tenant,))
            self.groups = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT id FROM dyno_crm.pipeline WHERE tenant_id = %s", (tenant,))
            self.pipelines = {row[0] for row in cur.fetchall()}
        conn.commit()

    def _open_in_period(
        self, start: dt.date, end: dt.date, pipeline: uuid.UUID | None
    ) -> list[Any]:
        chosen = []
        for deal in self.deals:
            pipeline_id, stage_id, _, expected, close = deal[:5]
            if pipeline is not None and pipeline_id != pipeline:
                continue
            if self.stage_state[stage_id] in DONE:
                continue
            when = expected if expected is not None else close
            if when is None or not (start <= when < end):
                continue
            chosen.append(deal)
        return chosen

    @staticmethod
    def _matches(deal: Any, principal_type: str, principal_id: uuid.UUID) -> bool:
        if principal_type == "USER":
            return principal_id in (deal[5], deal[6])
        return principal_id in (deal[7], deal[8])

    def coverage(
        self,
        start: dt.date,
        end: dt.date,
        principal_type: str,
        principal_id: uuid.UUID,
        pipeline: uuid.UUID | None = None,
    ) -> Expected:
        matching_targets = [
            t[5]
            for t in self.targets
            if t[0] == principal_type
            and t[1] == principal_id
            and t[3] == start
            and t[4] == end
            and (pipeline is None or t[2] == pipeline)
        ]
        target = sum(matching_targets, Decimal(0)) if matching_targets else None
        open_amount = Decimal(0)
        for deal in self._open_in_period(start, end, pipeline):
            if self._matches(deal, principal_type, principal_id):
                open_amount += deal[2] if deal[2] is not None else Decimal(0)
        ratio = None
        if target is not None and target != 0:
            with decimal.localcontext(prec=200):
                ratio = (open_amount / target).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        return Expected(target, open_amount, ratio)

    def principals(
        self, start: dt.date, end: dt.date, pipeline: uuid.UUID | None = None
    ) -> set[tuple[str, uuid.UUID]]:
        """SPEC.md §5: active users, all groups, and anyone with a target or open deal."""
        found = {("USER", u) for u in self.active_users} | {("GROUP", g) for g in self.groups}
        for t in self.targets:
            if t[3] == start and t[4] == end and (pipeline is None or t[2] == pipeline):
                found.add((t[0], t[1]))
        for deal in self._open_in_period(start, end, pipeline):
            for kind, value in (
                ("USER", deal[5]),
                ("USER", deal[6]),
                ("GROUP", deal[7]),
                ("GROUP", deal[8]),
            ):
                if value is not None:
                    found.add((kind, value))
        return found
