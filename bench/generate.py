"""Deterministic benchmark data, written as an import folder (docs/import-format.md).

Realistic skew: a few reps own most deals (Pareto weights), many deals lack an
expected close date (some lack both dates), most deals are closed, and close dates
spread over three years, so one quarter holds about a twelfth of a tenant's deals.
The same arguments always give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline_coverage.importing.formats import columns
from pipeline_coverage.periods import add_months, quarter_of

STAGES = (
    ("Prospecting", "NOT_STARTED", 10, 10),
    ("Qualification", "IN_PROGRESS", 25, 8),
    ("Proposal", "IN_PROGRESS", 50, 7),
    ("Negotiation", "IN_PROGRESS", 75, 5),
    ("Closed Won", "DONE_SUCCESS", 100, 30),
    ("Closed Lost", "DONE_FAILED", 0, 40),
)  # name, state, probability, weight: 70% of deals are closed


@dataclass(frozen=True)
class TenantSpec:
    """One tenant to generate: its name, deal count and principal counts."""

    name: str
    deals: int
    users: int
    groups: int
    pipelines: int
    #: Extra reps with exactly ``probe_deals`` deals each, spread evenly over time, so the
    #: single report can be timed on the same per-rep workload in tenants of any size.
    probes: int = 20
    probe_deals: int = 72
    #: The share of deals that are open and close in the reported period (a *dense*
    #: tenant); 0: dates spread over three years like every other deal.
    open_in_period: float = 0.0


@dataclass(frozen=True)
class GeneratedTenant:
    """What was written for a tenant: ids the benchmark needs."""

    name: str
    tenant_id: uuid.UUID
    deals: int
    users: list[uuid.UUID]
    groups: list[uuid.UUID]
    pipelines: list[uuid.UUID]
    probes: list[uuid.UUID]


class _Ids:
    """Deterministic UUIDs (version 4 layout) from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)


def generate(
    directory: Path,
    tenants: Sequence[TenantSpec],
    period_start: dt.date,
    seed: int = 42,
) -> list[GeneratedTenant]:
    """Write all tenants into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    new_id = _Ids(rng)
    period_end = add_months(period_start, 3)
    generated: list[GeneratedTenant] = []
    writers = _Writers(directory)
    try:
        for spec in tenants:
            generated.append(_tenant(writers, spec, rng, new_id, period_start, period_end))
    finally:
        writers.close()
    return generated


class _Writers:
    FILES = (
        "tenants.csv",
        "users.csv",
        "groups.csv",
        "group_members.csv",
        "pipelines.csv",
        "pipeline_stages.csv",
        "deals.csv",
        "sales_targets.csv",
    )

    def __init__(self, directory: Path) -> None:
        self.handles = {
            name: (directory / name).open("w", encoding="utf-8", newline="") for name in self.FILES
        }
        self.writers = {
            name: csv.writer(handle, lineterminator="\n") for name, handle in self.handles.items()
        }
        for name in self.FILES:
            self.writers[name].writerow(columns(name))

    def rows(self, name: str, rows: Iterator[Sequence[object]] | list[Sequence[object]]) -> None:
        self.writers[name].writerows(rows)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _tenant(
    out: _Writers,
    spec: TenantSpec,
    rng: random.Random,
    new_id: _Ids,
    period_start: dt.date,
    period_end: dt.date,
) -> GeneratedTenant:
    tenant = new_id()
    out.rows("tenants.csv", [(tenant, spec.name)])
    users = [new_id() for _ in range(spec.users)]
    groups = [new_id() for _ in range(spec.groups)]
    out.rows(
        "users.csv",
        [
            (
                u,
                tenant,
                f"Rep {i}",
                f"rep{i}@{spec.name}.example",
                "false" if i % 25 == 24 else "true",
            )
            for i, u in enumerate(users)
        ],
    )
    out.rows("groups.csv", [(g, tenant, f"Team {i}") for i, g in enumerate(groups)])
    team_of = [groups[i % len(groups)] for i in range(len(users))]
    out.rows("group_members.csv", [(tenant, team_of[i], u) for i, u in enumerate(users)])
    pipelines = [new_id() for _ in range(spec.pipelines)]
    out.rows("pipelines.csv", [(p, tenant, f"Pipeline {i}") for i, p in enumerate(pipelines)])
    stages = {p: [new_id() for _ in STAGES] for p in pipelines}
    out.rows(
        "pipeline_stages.csv",
        [
            (stages[p][k], tenant, p, name, state, probability, k + 1)
            for p in pipelines
            for k, (name, state, probability, _) in enumerate(STAGES)
        ],
    )

    probes = [new_id() for _ in range(spec.probes)]
    out.rows(
        "users.csv",
        [
            (u, tenant, f"Probe {i}", f"probe{i}@{spec.name}.example", "true")
            for i, u in enumerate(probes)
        ],
    )
    out.rows("group_members.csv", [(tenant, groups[0], u) for u in probes])

    # A few reps own most deals: Pareto-distributed weights.
    skewed = max(0, spec.deals - spec.probes * spec.probe_deals)
    owner_weights = [rng.paretovariate(1.16) for _ in users]
    owners = rng.choices(range(len(users)), weights=owner_weights, k=skewed)
    stage_picks = rng.choices(range(len(STAGES)), weights=[s[3] for s in STAGES], k=skewed)
    first_day = dt.date(period_start.year - 2, 1, 1).toordinal()
    span = dt.date(period_start.year + 1, 1, 1).toordinal() - first_day

    def probe_deals() -> Iterator[Sequence[object]]:
        for i, probe in enumerate(probes):
            for k in range(spec.probe_deals):
                day = dt.date.fromordinal(first_day + k * span // spec.probe_deals).isoformat()
                pipeline = pipelines[k % len(pipelines)]
                yield (
                    new_id(),
                    tenant,
                    pipeline,
                    stages[pipeline][k % len(STAGES)],
                    f"Probe deal {i}/{k}",
                    "1000.00",
                    day,
                    "",
                    probe,
                    probe,
                    groups[0],
                    "",
                )

    open_stages = [k for k, stage in enumerate(STAGES) if not stage[1].startswith("DONE")]
    period_days = (period_end - period_start).days

    def deals() -> Iterator[Sequence[object]]:
        yield from probe_deals()
        for n in range(skewed):
            owner = owners[n]
            pipeline = pipelines[n % len(pipelines)]
            day = dt.date.fromordinal(first_day + rng.randrange(span)).isoformat()
            stage = stage_picks[n]
            dense = bool(spec.open_in_period) and rng.random() < spec.open_in_period
            if dense:
                day = (period_start + dt.timedelta(days=rng.randrange(period_days))).isoformat()
                stage = open_stages[n % len(open_stages)]
            roll = rng.random()
            if roll < 0.55:
                expected, close = day, ""
            elif roll < 0.80:
                expected, close = day, day
            elif roll < 0.92:
                expected, close = "", day  # only the actual close date
            else:
                expected, close = "", ""  # no date at all
            if dense:
                expected, close = day, ""
            assignee = users[rng.randrange(len(users))] if rng.random() < 0.2 else users[owner]
            amount = "" if rng.random() < 0.05 else f"{rng.lognormvariate(9, 1.2):.2f}"
            yield (
                new_id(),
                tenant,
                pipeline,
                stages[pipeline][stage],
                f"Deal {n}",
                amount,
                expected,
                close,
                users[owner],
                assignee,
                team_of[owner],
                groups[rng.randrange(len(groups))] if rng.random() < 0.1 else "",
            )

    out.rows("deals.csv", deals())
    targets: list[Sequence[object]] = []
    for i, u in enumerate(users):
        if i % 10 != 9:  # some reps have no target
            targets.append(
                (
                    new_id(),
                    tenant,
                    "USER",
                    u,
                    "",
                    period_start,
                    period_end,
                    f"{rng.randint(50, 500) * 1000}.00",
                )
            )
    for g in groups:
        for p in pipelines:
            targets.append(
                (
                    new_id(),
                    tenant,
                    "GROUP",
                    g,
                    p,
                    period_start,
                    period_end,
                    f"{rng.randint(200, 2000) * 1000}.00",
                )
            )
    out.rows("sales_targets.csv", targets)
    return GeneratedTenant(spec.name, tenant, spec.deals, users, groups, pipelines, probes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--deals", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--pipelines", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    specs = [
        TenantSpec(f"tenant{i}", args.deals, args.users, args.groups, args.pipelines)
        for i in range(args.tenants)
    ]
    for t in generate(args.directory, specs, quarter_of(dt.date.today())[0], args.seed):
        print(t.tenant_id, t.name, t.deals)


if __name__ == "__main__":
    main()
