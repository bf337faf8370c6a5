"""Who is who: tenants, reps, teams and pipelines by name, so nobody has to dig
UUIDs out of CSV files. The CLI resolves ``--tenant Acme``, ``--principal "Ann Lee"``
and ``--pipeline Renewals`` here; an id is taken as it is."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_coverage.db.connection import Connection, as_uuid, records, unit_of_work
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.periods import fiscal_quarter_of, period_name, resolve_period
from pipeline_coverage.presentation import period_label
from pipeline_coverage.sql import query
from pipeline_coverage.validation import parse_principal_type, shown

_QUERIES = "directory"
#: At most this many candidates are named when a name is unknown or ambiguous.
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class TenantInfo:
    id: uuid.UUID
    name: str
    currency: str
    users: int
    groups: int
    deals: int


@dataclass(frozen=True)
class KnownPeriod:
    """A period a tenant has targets or runs for (or its current fiscal quarter)."""

    period_start: dt.date
    period_end: dt.date
    #: Its period expression in the tenant's calendar (``FY2027-Q1``), if one names it.
    name: str | None
    targets: int
    runs: int
    last_run: dt.datetime | None
    #: The fiscal quarter containing today.
    current: bool
    #: How it is shown (``presentation.period_label``).
    label: str = ""


@dataclass(frozen=True)
class PrincipalInfo:
    principal_type: str
    id: uuid.UUID
    name: str
    active: bool
    #: A team's parent team (SPEC.md §10), if it has one.
    parent_id: uuid.UUID | None = None
    parent_name: str | None = None


def list_tenants(conn: Connection) -> list[TenantInfo]:
    """Every tenant, by name, with its reporting currency and sizes."""
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "list_tenants"), {"tenant_id": None})
        found = records(cur)
    return [
        TenantInfo(as_uuid(r["id"]), r["name"], r["currency"], int(r["users"]),
                   int(r["groups"]), int(r["deals"]))
        for r in found
    ]  # fmt: skip


def list_principals(
    conn: Connection, tenant_id: uuid.UUID, kind: str | None = None
) -> list[PrincipalInfo]:
    """A tenant's reps and teams (``kind``: USER or GROUP only), by name."""
    params = {
        "tenant_id": str(tenant_id),
        "kind": parse_principal_type(kind) if kind is not None else None,
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "list_principals"), params)
        found = records(cur)
    return [
        PrincipalInfo(
            r["principal_type"], as_uuid(r["id"]), r["name"], bool(r["active"]),
            as_uuid(r["parent_id"]) if r["parent_id"] is not None else None, r["parent_name"],
        )
        for r in found
    ]  # fmt: skip


def _as_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _named(field: str, text: str) -> str:
    """The name or id a look-up is given; an empty one would match every name."""
    if not text.strip():
        raise ValidationError(f"{field}: empty (give a name or an id)")
    return text


def _one(
    field: str,
    what: str,
    text: str,
    hits: list[dict[str, Any]],
    label: Callable[[dict[str, Any]], str],
    known: Callable[[], list[str]],
) -> dict[str, Any]:
    """The one hit, or an error naming the candidates (exit 2 in the CLI): the hits
    when the name is ambiguous, what there is when it matches nothing."""
    if len(hits) == 1:
        return hits[0]
    if not hits:
        there = known()
        listed = "; ".join(there[:MAX_CANDIDATES]) + (" …" if len(there) > MAX_CANDIDATES else "")
        raise NotFoundError(
            f"{field}: no {what} named {shown(text)}" + (f" (there are: {listed})" if there else "")
        )
    count = str(len(hits)) if len(hits) <= MAX_CANDIDATES else f"more than {MAX_CANDIDATES}"
    names = "; ".join(label(hit) for hit in hits[:MAX_CANDIDATES])
    raise ValidationError(
        f"{field}: {shown(text)} could be {count} {what}s: {names}; give the id or the exact name"
    )


def resolve_tenant(conn: Connection, text: str) -> uuid.UUID:
    """A tenant by id or name (any case; a unique part of a name will do)."""
    found = _as_id(_named("tenant", text))
    if found is not None:
        return found
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "find_tenants"), {"text": text})
        hits = records(cur)
    hit = _one(
        "tenant", "tenant", text, hits, lambda h: f"{h['name']} ({h['id']})",
        lambda: [f"{t.name} ({t.id})" for t in list_tenants(conn)],
    )  # fmt: skip
    return as_uuid(hit["id"])


def resolve_principal(
    conn: Connection, tenant_id: uuid.UUID, text: str, kind: str | None = None
) -> tuple[str, uuid.UUID]:
    """A rep or team of the tenant by name (or id, with ``kind``): (type, id)."""
    found = _as_id(_named("principal", text))
    if found is not None:
        if kind is None:
            raise ValidationError("principal: give --principal-type with an id")
        return parse_principal_type(kind), found
    params = {
        "tenant_id": str(tenant_id),
        "text": text,
        "kind": parse_principal_type(kind) if kind is not None else None,
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "find_principals"), params)
        hits = records(cur)
    hit = _one(
        "principal", "rep or team", text, hits,
        lambda h: f"{h['name']} ({h['principal_type']} {h['id']})",
        lambda: [p.name for p in list_principals(conn, tenant_id, kind)],
    )  # fmt: skip
    return hit["principal_type"], as_uuid(hit["id"])


def principal_name(
    conn: Connection, tenant_id: uuid.UUID, kind: str, principal_id: uuid.UUID
) -> str | None:
    """A rep's or team's name today; None when the tenant has none such."""
    params = {"tenant_id": str(tenant_id), "kind": parse_principal_type(kind),
              "id": str(principal_id)}  # fmt: skip
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "principal_name"), params)
        [found] = records(cur)
    name = found["name"]
    return name if isinstance(name, str) else None


def resolve_pipeline(conn: Connection, tenant_id: uuid.UUID, text: str) -> uuid.UUID:
    """A pipeline of the tenant by id or name."""
    found = _as_id(_named("pipeline", text))
    if found is not None:
        return found
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "find_pipelines"), {"tenant_id": str(tenant_id), "text": text})
        hits = records(cur)
    hit = _one(
        "pipeline", "pipeline", text, hits, lambda h: f"{h['name']} ({h['id']})",
        lambda: [p["name"] for p in _pipelines(conn, tenant_id)],
    )  # fmt: skip
    return as_uuid(hit["id"])


def require_known(
    conn: Connection,
    tenant_id: uuid.UUID,
    principal: tuple[str, uuid.UUID] | None = None,
    pipeline_id: uuid.UUID | None = None,
    *,
    stored_runs: bool = True,
) -> None:
    """Raise NotFoundError (exit 2 in the CLI) naming the rep or team, or the pipeline,
    given by id that the tenant does not have. For a read that found nothing
    (``stored_runs``: a principal deleted since still has its stored runs, so only an
    empty answer is checked), or before a run is computed."""
    kind, who = principal if principal is not None else (None, None)
    with unit_of_work(conn) as cur:
        # (the run's own scope check: whether the tenant has the principal, the pipeline)
        cur.execute(
            query("coverage", "check_scope"),
            {"tenant_id": str(tenant_id), "principal_type": kind,
             "principal_id": str(who) if who else None,
             "pipeline_id": str(pipeline_id) if pipeline_id else None,
             "as_of": dt.date.today()},
        )  # fmt: skip
        [known] = records(cur)
    stored = ", and no stored run has it" if stored_runs else ""
    if not known["tenant_exists"]:
        raise NotFoundError(f"tenant_id: no tenant {tenant_id}")
    if not known["principal_exists"]:
        what = "user" if kind == "USER" else "group"
        raise NotFoundError(f"principal_id: no {what} {who} in tenant {tenant_id}{stored}")
    if not known["pipeline_exists"]:
        field = "pipeline" if stored_runs else "pipeline_id"
        raise NotFoundError(f"{field}: no pipeline {pipeline_id} in tenant {tenant_id}{stored}")


def _pipelines(conn: Connection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "find_pipelines"), {"tenant_id": str(tenant_id), "text": ""})
        return records(cur)


def tenant_period(
    conn: Connection, tenant_id: uuid.UUID, expression: str, as_of: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The period an expression names in the tenant's fiscal calendar (SPEC.md §10)."""
    month = fiscal_year_start_month(conn, tenant_id)
    return resolve_period(expression, fiscal_year_start_month=month, as_of=as_of)


def fiscal_year_start_month(conn: Connection, tenant_id: uuid.UUID) -> int:
    """The month the tenant's fiscal year starts in (1 to 12)."""
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "tenant_calendar"), {"tenant_id": str(tenant_id)})
        found = records(cur)
    if not found:
        raise NotFoundError(f"tenant_id: no tenant {tenant_id}")
    return int(found[0]["fiscal_year_start_month"])


#: At most this many periods are listed.
MAX_PERIODS = 200


def known_periods(
    conn: Connection, tenant_id: uuid.UUID, today: dt.date | None = None
) -> list[KnownPeriod]:
    """The periods a tenant has target rows or runs for, newest first, with the
    current fiscal quarter among them even when it has neither."""
    month = fiscal_year_start_month(conn, tenant_id)
    with unit_of_work(conn) as cur:
        cur.execute(
            query(_QUERIES, "known_periods"), {"tenant_id": str(tenant_id), "limit": MAX_PERIODS}
        )
        found = records(cur)
    current = fiscal_quarter_of(today or dt.date.today(), month)
    periods: dict[tuple[dt.date, dt.date], KnownPeriod] = {}
    for r in found:
        span = (r["period_start"], r["period_end"])
        periods[span] = KnownPeriod(
            *span, period_name(*span, month), int(r["targets"]), int(r["runs"]), r["last_run"],
            current=span == current, label=period_label(*span, month),
        )  # fmt: skip
    if current not in periods:
        periods[current] = KnownPeriod(
            *current, period_name(*current, month), 0, 0, None, current=True,
            label=period_label(*current, month),
        )  # fmt: skip
    return sorted(periods.values(), key=lambda p: (p.period_start, p.period_end), reverse=True)


def default_period(periods: list[KnownPeriod]) -> KnownPeriod:
    """The period to open on: the current quarter when it has targets or runs; else
    the period last run; else the latest one with targets that has begun; else the
    current quarter. (Not an empty current quarter when there is data elsewhere.)"""
    [current] = [p for p in periods if p.current]
    if current.targets or current.runs:
        return current
    ran = [(p.last_run, p) for p in periods if p.last_run is not None]
    if ran:
        return max(ran, key=lambda pair: pair[0])[1]
    begun = [p for p in periods if p.targets and p.period_start <= current.period_start]
    return begun[0] if begun else current
