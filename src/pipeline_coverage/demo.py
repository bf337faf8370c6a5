"""A realistic demo tenant, written as an import folder (SPEC.md §4).

The data is deterministic for a given ``today``: fixed ids (UUID v5) and a seeded
random generator, so loading the demo twice upserts the same tenant. Deals spread
over the past four and the next three quarters; past deals are mostly closed, and
targets exist for the current quarter.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pipeline_coverage.db.connection import Connection, unit_of_work
from pipeline_coverage.importing.formats import columns
from pipeline_coverage.periods import add_months, quarter_of
from pipeline_coverage.sql import query
from pipeline_coverage.store import insert_run

_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4b8e-9f51-2a7f0c9d4e11")

TENANT_NAME = "Northwind Traders (demo)"
TENANT_ID = uuid.uuid5(_NAMESPACE, "tenant")

_TEAMS = (
    ("Enterprise East", 90_000, 5),
    ("Enterprise West", 80_000, 5),
    ("Mid-Market", 30_000, 5),
    ("SMB", 8_000, 6),
)
#: A region over two of the teams (SPEC.md §10), with a quota a little below what
#: its teams were handed: `run --all --rollup` shows it against their targets.
_REGION = ("Enterprise", ("Enterprise East", "Enterprise West"), 160_000)
_FIRST = (
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kara",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
)
_LAST = (
    "Andersen",
    "Becker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Huang",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinlan",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
)
_PIPELINES = ("New Business", "Renewals", "Expansion")
_STAGES = (
    ("Prospecting", "NOT_STARTED", 10),
    ("Qualification", "IN_PROGRESS", 25),
    ("Proposal", "IN_PROGRESS", 50),
    ("Negotiation", "IN_PROGRESS", 75),
    ("Closed Won", "DONE_SUCCESS", 100),
    ("Closed Lost", "DONE_FAILED", 0),
)
_PRODUCTS = ("Platform", "Analytics", "Support Plus", "Data Sync", "Seats", "Onboarding")
_COMPANIES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Vandelay",
    "Pied Piper",
    "Massive Dynamic",
)


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))))


@dataclass(frozen=True)
class DemoSummary:
    """What the demo folder holds."""

    tenant_id: uuid.UUID
    period_start: dt.date
    period_end: dt.date
    users: int
    groups: int
    deals: int


def write_demo(directory: Path, today: dt.date, deals: int = 4000) -> DemoSummary:
    """Write the demo tenant's CSV files into ``directory`` (which must exist)."""
    rng = random.Random(20260101)
    tenant = str(TENANT_ID)
    q_start, q_end = quarter_of(today)

    users: list[tuple[str, str, str, str, str]] = []
    groups: list[tuple[str, str, str, str]] = []  # (id, tenant, name, parent group id)
    members: list[tuple[str, str, str]] = []
    reps: list[tuple[str, str, int]] = []  # (user id, group id, typical deal size)
    names = iter(zip(_FIRST, _LAST, strict=True))
    for team, deal_size, headcount in _TEAMS:
        group_id = _id("group", team)
        region = _REGION[0] if team in _REGION[1] else None
        groups.append((group_id, tenant, team, _id("group", region) if region else ""))
        for seat in range(headcount):
            first, last = next(names)
            user_id = _id("user", team, seat)
            active = "false" if (team, seat) == ("SMB", 5) else "true"
            email = f"{first.lower()}.{last.lower()}@northwind.example"
            users.append((user_id, tenant, f"{first} {last}", email, active))
            members.append((tenant, group_id, user_id))
            reps.append((user_id, group_id, deal_size))

    pipelines = [(_id("pipeline", p), tenant, p) for p in _PIPELINES]
    stages = [
        (_id("stage", p, s), tenant, _id("pipeline", p), s, state, str(prob), str(pos))
        for p in _PIPELINES
        for pos, (s, state, prob) in enumerate(_STAGES, start=1)
    ]

    # A few reps carry most of the pipeline (Pareto weights).
    weights = [rng.paretovariate(1.5) for _ in reps]
    deal_rows = []
    for n in range(deals):
        owner, team_id, size = rng.choices(reps, weights=weights)[0]
        pipeline = rng.choices(_PIPELINES, weights=(6, 3, 2))[0]
        quarter_offset = rng.randint(-4, 2)
        start = add_months(q_start, 3 * quarter_offset)
        close = start + dt.timedelta(days=rng.randrange((add_months(start, 3) - start).days))
        stage = _pick_stage(rng, close, today)
        amount = Decimal(round(rng.lognormvariate(0, 0.7) * size, -2)).quantize(Decimal("0.01"))
        expected, actual = close.isoformat(), ""
        if stage[1].startswith("DONE") and rng.random() < 0.5:
            expected, actual = "", close.isoformat()  # closed deals often only carry close_date
        if rng.random() < 0.02:
            expected, actual = "", ""  # no date at all: never counted
        assignee = rng.choice(reps)[0] if rng.random() < 0.15 else owner
        deal_rows.append(
            (
                _id("deal", n),
                tenant,
                _id("pipeline", pipeline),
                _id("stage", pipeline, stage[0]),
                f"{rng.choice(_COMPANIES)} {rng.choice(_PRODUCTS)} #{n + 1}",
                "" if rng.random() < 0.01 else str(amount),
                expected,
                actual,
                owner,
                assignee,
                team_id,
                rng.choice(groups)[0] if rng.random() < 0.05 else "",
            )
        )

    # (The region comes after the deals, so that they stay what they were without it.)
    groups.append((_id("group", _REGION[0]), tenant, _REGION[0], ""))
    sizes = {team: size for team, size, _ in _TEAMS} | {_REGION[0]: _REGION[2]}

    targets = []
    for index, (user_id, _, size) in enumerate(reps):
        if index == len(reps) - 2:
            continue  # a new hire without a target yet
        # Sized so that mid-quarter a typical rep has won part of the quota and needs
        # the open pipeline for the rest (won + open in a quarter is ~8x size).
        quota = Decimal(size * rng.randint(20, 50)).quantize(Decimal("0.01"))
        targets.append(
            (
                _id("target", user_id, q_start),
                tenant,
                "USER",
                user_id,
                "",
                q_start.isoformat(),
                q_end.isoformat(),
                str(quota),
            )
        )
    for group_id, _, team, _ in groups:
        size = sizes[team]
        for pipeline_name, share in (("New Business", 100), ("Renewals", 40), ("Expansion", 25)):
            targets.append(
                (
                    _id("target", group_id, pipeline_name, q_start),
                    tenant,
                    "GROUP",
                    group_id,
                    _id("pipeline", pipeline_name),
                    q_start.isoformat(),
                    q_end.isoformat(),
                    str(Decimal(size * share).quantize(Decimal("0.01"))),
                )
            )

    for file, rows in (
        ("tenants.csv", [(tenant, TENANT_NAME)]),
        ("users.csv", users),
        ("groups.csv", groups),
        ("group_members.csv", members),
        ("pipelines.csv", pipelines),
        ("pipeline_stages.csv", stages),
        ("deals.csv", deal_rows),
        ("sales_targets.csv", targets),
    ):
        _write(directory / file, columns(file, optional=file == "groups.csv"), rows)
    return DemoSummary(TENANT_ID, q_start, q_end, len(users), len(groups), len(deal_rows))


def _pick_stage(rng: random.Random, close: dt.date, today: dt.date) -> tuple[str, str, int]:
    if close < today:
        # Past close dates: mostly settled, a few slipped deals still open.
        weights: Sequence[int] = (1, 2, 2, 3, 45, 47)
    else:
        weights = (25, 25, 20, 15, 8, 7)
    return rng.choices(_STAGES, weights=weights)[0]


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# --- past quarters, for calibration (SPEC.md §14) ------------------------------------

#: How many past quarters of made-up runs the demo tenant gets: enough for calibration
#: (which needs four) to fit every week.
PAST_QUARTERS = 8


def write_past_runs(
    conn: Connection, today: dt.date, quarters: int = PAST_QUARTERS, *, rollup: bool = True
) -> int:
    """Made-up batch runs of the demo reps over the ``quarters`` calendar quarters
    before ``today``'s — one a week and one after each quarter's end — so that
    ``calibration`` has a history to learn from. Demo data, marked so in each run's
    parameters (``demo_history``), with fact rows and no drill-down. Drawn so that the
    chance of making the number is logistic in ln(coverage) with the 50% point falling
    from 2.6x in week 1 to about 1.3x in week 13 (the construction of
    docs/calibration.md's worked example). Replaces an earlier demo history; returns
    how many runs it wrote."""
    rng = random.Random(20260214)
    reps = [
        (_id("user", team, seat), f"{first} {last}")
        for (team, _, headcount), names in zip(_TEAMS, _name_groups(), strict=True)
        for seat, (first, last) in zip(range(headcount), names, strict=True)
    ]
    first_quarter = add_months(quarter_of(today)[0], -3 * quarters)
    written = 0
    with unit_of_work(conn) as cur:
        cur.execute(query("demo", "delete_past_runs"), {"tenant_id": str(TENANT_ID)})
        for back in range(quarters):
            start = add_months(first_quarter, 3 * back)
            end = add_months(start, 3)
            made = {rep: rng.random() < 0.5 for rep, _ in reps}
            own = {rep: rng.gauss(0, 1) for rep, _ in reps}
            quota = {rep: Decimal(rng.randint(20, 50) * 10_000) for rep, _ in reps}
            for week in range(1, 15):  # week 14: the run after the quarter's end
                as_of = start + dt.timedelta(days=7 * (week - 1) + 4) if week < 14 else end
                run_id = insert_run(cur, TENANT_ID, (start, end), {
                    "mode": "batch", "pipeline_id": None, "by_pipeline": False,
                    "period_start": start.isoformat(), "period_end": end.isoformat(),
                    "rollup": rollup, "target_match": "exact", "win_rate_lookback_days": 365,
                    "as_of": as_of.isoformat(), "currency": "USD", "rates": {},
                    "demo_history": True,
                })  # fmt: skip
                opens, wons = [], []
                for rep, _ in reps:
                    target = quota[rep]
                    if week == 14:
                        won = target if made[rep] else (target * Decimal("0.7")).quantize(_CENT)
                        opens.append(Decimal(0))
                        wons.append(won)
                        continue
                    c50 = 2.6 * math.exp(-0.06 * (week - 1))
                    mean = math.log(c50) + (0.375 if made[rep] else -0.375)
                    noise = math.sqrt(0.6) * own[rep] + math.sqrt(0.4) * rng.gauss(0, 1)
                    won = (target * Decimal(week) / Decimal(40)).quantize(_CENT)
                    coverage = Decimal(repr(math.exp(mean + 0.5 * noise)))
                    opens.append(((target - won) * coverage).quantize(_CENT))
                    wons.append(won)
                cur.execute(
                    query("demo", "insert_past_rows"),
                    {
                        "run_id": str(run_id), "tenant_id": str(TENANT_ID),
                        "period_start": start, "period_end": end,
                        "principal_ids": [rep for rep, _ in reps],
                        "names": [name for _, name in reps], "targets": [quota[r] for r, _ in reps],
                        "opens": opens, "wons": wons,
                    },
                )  # fmt: skip
                written += 1
    return written


_CENT = Decimal("0.01")


def _name_groups() -> list[list[tuple[str, str]]]:
    """The reps' names, team by team, as ``write_demo`` hands them out."""
    names = iter(zip(_FIRST, _LAST, strict=True))
    return [[next(names) for _ in range(headcount)] for _, _, headcount in _TEAMS]
