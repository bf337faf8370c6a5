"""An independent computation of every number a run stores, in plain Python.

It reads the raw rows with plain queries and applies SPEC.md §1, §5, §7 and §8 rule
by rule, so the report's SQL is checked against something that shares none of its
code: classes, credit and its reasons, every metric, the flags and the principal set.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

DONE = {"DONE_SUCCESS", "DONE_FAILED"}
ZERO = Decimal(0)


@dataclass(frozen=True)
class Expected:
    target_amount: Decimal | None
    open_amount: Decimal
    coverage_ratio: Decimal | None


@dataclass(frozen=True)
class Deal:
    id: uuid.UUID
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID
    amount: Decimal | None
    expected: dt.date | None
    close: dt.date | None
    owner: uuid.UUID | None
    assignee: uuid.UUID | None
    owner_group: uuid.UUID | None
    assignee_group: uuid.UUID | None
    forecast_category: str | None
    currency: str | None


@dataclass(frozen=True)
class Options:
    """A run's options, as the oracle needs them."""

    start: dt.date
    end: dt.date
    pipeline: uuid.UUID | None = None
    by_pipeline: bool = False
    as_of: dt.date = field(default_factory=dt.date.today)
    target_match: str = "exact"
    lookback_days: int = 365
    rollup: bool = False


def _ratio(numerator: Decimal, denominator: Decimal | None, places: str = "0.0001") -> Any:
    if denominator is None or denominator == 0:
        return None
    with decimal.localcontext(prec=200):
        return (numerator / denominator).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class Oracle:
    """A snapshot of one tenant's raw data, and the rules applied to it."""

    def __init__(self, conn: psycopg.Connection[Any], tenant: uuid.UUID) -> None:
        self.tenant = tenant
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id, stage_state, probability, forecast_category"
                " FROM dyno_crm.pipeline_stage WHERE tenant_id = %s",
                (tenant,),
            )
            stages = cur.fetchall()
            self.stage_state = {row[0]: row[1] for row in stages}
            self.stage_probability = {row[0]: row[2] for row in stages}
            self.stage_category = {row[0]: row[3] for row in stages}
            cur.execute(
                "SELECT id, pipeline_id, stage_id, amount, expected_close_date, close_date,"
                " owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id,"
                " forecast_category, currency FROM dyno_crm.deal WHERE tenant_id = %s",
                (tenant,),
            )
            self.all_deals = [Deal(*row) for row in cur.fetchall()]
            # The seed's tuple view (pipeline, stage, amount, expected, close, owner,
            # assignee, owner group, assigned group), kept for the older tests.
            self.deals = [
                (d.pipeline_id, d.stage_id, d.amount, d.expected, d.close, d.owner,
                 d.assignee, d.owner_group, d.assignee_group)
                for d in self.all_deals
            ]  # fmt: skip
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
            cur.execute(
                "SELECT id, parent_group_id FROM dyno_crm.crm_group WHERE tenant_id = %s",
                (tenant,),
            )
            self.parent = dict(cur.fetchall())
            self.groups = set(self.parent)
            cur.execute(
                "SELECT group_id, user_id FROM dyno_crm.group_member WHERE tenant_id = %s",
                (tenant,),
            )
            self.members: dict[uuid.UUID, set[uuid.UUID]] = {}
            for group, user in cur.fetchall():
                self.members.setdefault(group, set()).add(user)
            cur.execute("SELECT id FROM dyno_crm.pipeline WHERE tenant_id = %s", (tenant,))
            self.pipelines = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT currency FROM dyno_crm.tenant WHERE id = %s", (tenant,))
            self.currency = cur.fetchall()[0][0]
            cur.execute(
                "SELECT currency, valid_from, rate FROM dyno_crm.exchange_rate"
                " WHERE tenant_id = %s",
                (tenant,),
            )
            self.rates = cur.fetchall()
        conn.commit()

    # --- SPEC.md §9: currency ----------------------------------------------------------

    def rate(self, deal: Deal, as_of: dt.date) -> Decimal | None:
        """1 for the reporting currency; else the rate with the latest valid_from on or
        before as_of; None when there is none (NO_RATE)."""
        if deal.currency is None or deal.currency == self.currency:
            return Decimal(1)
        in_force = [(valid, rate) for cur, valid, rate in self.rates
                    if cur == deal.currency and valid <= as_of]  # fmt: skip
        return max(in_force)[1] if in_force else None

    def reporting(self, deal: Deal, as_of: dt.date) -> Decimal | None:
        rate = self.rate(deal, as_of)
        if rate is None:
            return None
        return _money((deal.amount if deal.amount is not None else ZERO) * rate)

    # --- SPEC.md §7: classes and credit ----------------------------------------------

    def deal_class(self, deal: Deal, o: Options) -> str | None:
        """OPEN, WON, LOST, UNDATED, HISTORY_WON, HISTORY_LOST (the win rate's), or None."""
        if o.pipeline is not None and deal.pipeline_id != o.pipeline:
            return None
        state = self.stage_state[deal.stage_id]
        if state not in DONE:
            when = deal.expected if deal.expected is not None else deal.close
            if when is None:
                return "UNDATED"
            return "OPEN" if o.start <= when < o.end else None
        when = deal.close if deal.close is not None else deal.expected
        if when is None:
            return None
        won = state == "DONE_SUCCESS"
        if o.start <= when < o.end:
            return "WON" if won else "LOST"
        if o.start - dt.timedelta(days=o.lookback_days) <= when < o.start:
            return "HISTORY_WON" if won else "HISTORY_LOST"
        return None

    def ancestors(self, group: uuid.UUID) -> list[uuid.UUID]:
        """The groups above ``group``, nearest first (walking parent links)."""
        found: list[uuid.UUID] = []
        at = self.parent.get(group)
        while at is not None and at not in found and at != group:
            found.append(at)
            at = self.parent.get(at)
        return found

    def credits(self, deal: Deal, rollup: bool = False) -> list[tuple[str, uuid.UUID, str]]:
        """(principal type, principal, reason): the first reason that applies, once each.
        With rollup a group also gets its members' deals (MEMBER) and those of every
        group below it, which it reaches by their ancestors (SUBGROUP)."""
        found: dict[tuple[str, uuid.UUID], str] = {}
        people = [who for who in (deal.owner, deal.assignee) if who is not None]
        named = [g for g in (deal.owner_group, deal.assignee_group) if g is not None]
        member_of = [g for g, users in self.members.items() if any(p in users for p in people)]
        candidates = [
            ("USER", deal.owner, "OWNER"),
            ("USER", deal.assignee, "ASSIGNEE"),
            ("GROUP", deal.owner_group, "OWNER_GROUP"),
            ("GROUP", deal.assignee_group, "ASSIGNED_GROUP"),
        ]
        if rollup:
            candidates += [("GROUP", g, "MEMBER") for g in member_of]
            candidates += [
                ("GROUP", above, "SUBGROUP")
                for g in named + member_of
                for above in self.ancestors(g)
            ]
        for kind, who, reason in candidates:
            if who is not None and (kind, who) not in found:
                found[(kind, who)] = reason
        return [(kind, who, reason) for (kind, who), reason in found.items()]

    def bucket(self, deal: Deal, o: Options) -> uuid.UUID | None:
        return deal.pipeline_id if o.by_pipeline else o.pipeline

    def drilldown(
        self, o: Options, principal: tuple[str, uuid.UUID] | None = None
    ) -> dict[tuple[str, uuid.UUID, uuid.UUID | None], dict[uuid.UUID, tuple[str, str]]]:
        """Per (principal type, principal, bucket): {deal: (class, reason)} of the
        period's classes (the drill-down SPEC.md §7 stores)."""
        rows: dict[tuple[str, uuid.UUID, uuid.UUID | None], dict[uuid.UUID, tuple[str, str]]]
        rows = {}
        for deal in self.all_deals:
            kind_of = self.deal_class(deal, o)
            if kind_of not in ("OPEN", "WON", "LOST", "UNDATED"):
                continue
            for kind, who, reason in self.credits(deal, o.rollup):
                if principal is not None and (kind, who) != principal:
                    continue
                key = (kind, who, self.bucket(deal, o))
                rows.setdefault(key, {})[deal.id] = (kind_of, reason)
        return rows

    def forecast_category(self, deal: Deal, o: Options) -> str:
        """The category a drill-down row shows: a won deal's is CLOSED and a lost one's
        OMITTED (its outcome); an open or undated deal's is its own, else its stage's,
        else PIPELINE (SPEC.md §8)."""
        closed = {"WON": "CLOSED", "LOST": "OMITTED"}.get(self.deal_class(deal, o) or "")
        if closed is not None:
            return closed
        return deal.forecast_category or self.stage_category[deal.stage_id] or "PIPELINE"

    def deal_flags(self, deal: Deal, o: Options) -> set[str]:
        kind_of = self.deal_class(deal, o)
        flags = set()
        if kind_of == "UNDATED":
            flags.add("UNDATED")
        if kind_of in ("OPEN", "WON", "LOST", "UNDATED") and self.rate(deal, o.as_of) is None:
            flags.add("NO_RATE")
        if kind_of == "OPEN":
            if deal.amount is None:
                flags.add("NO_AMOUNT")
            if self.stage_probability[deal.stage_id] is None:
                flags.add("NO_PROBABILITY")
            when = deal.expected if deal.expected is not None else deal.close
            assert when is not None
            if when < o.as_of:
                flags.add("PAST_DUE")
        return flags

    # --- SPEC.md §8: the metrics of a row ---------------------------------------------

    def _target_rows(
        self, o: Options, kind: str, who: uuid.UUID, bucket: uuid.UUID | None
    ) -> tuple[list[Decimal], bool]:
        """(matched target amounts, whether any target row overlaps the period)."""
        matched: list[Decimal] = []
        overlapping = False
        for t_kind, t_who, t_pipeline, t_start, t_end, amount in self.targets:
            if (t_kind, t_who) != (kind, who):
                continue
            if o.pipeline is not None and t_pipeline != o.pipeline:
                continue
            row_bucket = t_pipeline if o.by_pipeline else o.pipeline
            if row_bucket != bucket:
                continue
            if not (t_start < o.end and t_end > o.start):
                continue
            overlapping = True
            if o.target_match == "within":
                hit = t_start >= o.start and t_end <= o.end
            else:
                hit = (t_start, t_end) == (o.start, o.end)
            if hit:
                matched.append(amount)
        return matched, overlapping

    def targets_overlap(
        self, o: Options, kind: str, who: uuid.UUID, bucket: uuid.UUID | None
    ) -> bool:
        """target_match=within: whether two of the row's matched target rows, of one
        pipeline (or none), have overlapping periods (both are summed: TARGET_OVERLAP)."""
        if o.target_match != "within":
            return False
        inside = [
            (t_pipeline, t_start, t_end)
            for t_kind, t_who, t_pipeline, t_start, t_end, _ in self.targets
            if (t_kind, t_who) == (kind, who)
            and (o.pipeline is None or t_pipeline == o.pipeline)
            and (t_pipeline if o.by_pipeline else o.pipeline) == bucket
            and o.start <= t_start
            and t_end <= o.end
        ]
        return any(
            p1 == p2 and s1 < e2 and s2 < e1
            for i, (p1, s1, e1) in enumerate(inside)
            for p2, s2, e2 in inside[i + 1 :]
        )

    def row(
        self, o: Options, kind: str, who: uuid.UUID, bucket: uuid.UUID | None
    ) -> dict[str, Any]:
        """Every metric of SPEC.md §8 and the row's flags, for one principal and bucket."""
        matched, overlapping = self._target_rows(o, kind, who, bucket)
        target = sum(matched, ZERO) if matched else None
        sums: dict[str, Any] = {
            "open_amount": ZERO, "open_count": 0, "weighted_amount": ZERO,
            "commit_amount": ZERO, "best_case_amount": ZERO, "pipeline_amount": ZERO,
            "omitted_amount": ZERO, "won_amount": ZERO, "won_count": 0, "lost_amount": ZERO,
            "lost_count": 0, "past_due_amount": ZERO, "past_due_count": 0,
            "undated_amount": ZERO, "undated_count": 0,
        }  # fmt: skip
        history_won = history_lost = 0
        for deal in self.all_deals:
            kind_of = self.deal_class(deal, o)
            if kind_of is None or self.bucket(deal, o) != bucket:
                continue
            if (kind, who) not in {(k, w) for k, w, _ in self.credits(deal, o.rollup)}:
                continue
            reported = self.reporting(deal, o.as_of)
            if reported is None:
                continue  # NO_RATE: left out of every amount and count
            amount = reported
            if kind_of == "OPEN":
                sums["open_amount"] += amount
                sums["open_count"] += 1
                probability = self.stage_probability[deal.stage_id] or 0
                sums["weighted_amount"] += _money(amount * probability / 100)
                category = (
                    deal.forecast_category or self.stage_category[deal.stage_id] or "PIPELINE"
                )
                sums[f"{category.lower()}_amount"] += amount
                if "PAST_DUE" in self.deal_flags(deal, o):  # (not for NO_RATE deals: see above)
                    sums["past_due_amount"] += amount
                    sums["past_due_count"] += 1
            elif kind_of == "WON":
                sums["won_amount"] += amount
                sums["won_count"] += 1
            elif kind_of == "LOST":
                sums["lost_amount"] += amount
                sums["lost_count"] += 1
            elif kind_of == "UNDATED":
                sums["undated_amount"] += amount
                sums["undated_count"] += 1
            elif kind_of == "HISTORY_WON":
                history_won += 1
            elif kind_of == "HISTORY_LOST":
                history_lost += 1
        remaining = None if target is None else max(target - sums["won_amount"], ZERO)
        member_target = None
        if o.rollup and kind == "GROUP":
            below = [("USER", u) for u in self.members.get(who, ())]
            below += [("GROUP", g) for g, parent in self.parent.items() if parent == who]
            amounts = [a for k, w in below for a in self._target_rows(o, k, w, bucket)[0]]
            member_target = sum(amounts, ZERO) if amounts else None
        win_rate = (
            _ratio(Decimal(history_won), Decimal(history_won + history_lost))
            if history_won + history_lost
            else None
        )
        gap = None
        if remaining is not None and win_rate:
            with decimal.localcontext(prec=200):
                gap = _money(remaining / win_rate - sums["open_amount"])
        return {
            **sums,
            "target_amount": target,
            "coverage_ratio": _ratio(sums["open_amount"], target),
            "attainment_ratio": _ratio(sums["won_amount"], target),
            "remaining_target": remaining,
            "remaining_coverage_ratio": _ratio(sums["open_amount"], remaining),
            "win_rate": win_rate,
            "history_won_count": history_won,
            "history_lost_count": history_lost,
            "needed_coverage": _ratio(Decimal(1), win_rate),
            "pipeline_gap": gap,
            "member_target_amount": member_target,
            # A random tenant has no calibration (no past quarters): its rows have no
            # hit probability (tests/integration/test_calibration.py has the fitted).
            "hit_probability": None,
            "hit_probability_low": None,
            "hit_probability_high": None,
            "flags": ["TARGET_PERIOD_MISMATCH"]
            if target is None and overlapping
            else ["TARGET_OVERLAP"]
            if self.targets_overlap(o, kind, who, bucket)
            else [],
        }

    def run_principals(self, o: Options) -> set[tuple[str, uuid.UUID]]:
        """SPEC.md §5 and §8: active users, all groups, anyone with a matched target or
        a credited deal of the period (open, won, lost or undated)."""
        found = {("USER", u) for u in self.active_users} | {("GROUP", g) for g in self.groups}
        for t_kind, t_who, t_pipeline, t_start, t_end, _ in self.targets:
            if o.pipeline is not None and t_pipeline != o.pipeline:
                continue
            if o.target_match == "within":
                hit = t_start >= o.start and t_end <= o.end
            else:
                hit = (t_start, t_end) == (o.start, o.end)
            if hit:
                found.add((t_kind, t_who))
        for kind, who, _ in self.drilldown(o):
            found.add((kind, who))
        return found

    def buckets(self, o: Options) -> list[uuid.UUID | None]:
        if o.by_pipeline:
            return sorted(p for p in self.pipelines if o.pipeline in (None, p))
        return [o.pipeline]

    # --- the seed's view (SPEC.md §1 and §5), used by the older tests -----------------

    def coverage(
        self,
        start: dt.date,
        end: dt.date,
        principal_type: str,
        principal_id: uuid.UUID,
        pipeline: uuid.UUID | None = None,
    ) -> Expected:
        found = self.row(Options(start, end, pipeline), principal_type, principal_id, pipeline)
        return Expected(found["target_amount"], found["open_amount"], found["coverage_ratio"])

    def principals(
        self, start: dt.date, end: dt.date, pipeline: uuid.UUID | None = None
    ) -> set[tuple[str, uuid.UUID]]:
        """SPEC.md §5 (and §8's additions): the principals of a batch."""
        return self.run_principals(Options(start, end, pipeline))
