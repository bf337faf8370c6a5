"""The pipeline coverage report: compute a run and store it (SPEC.md §1, §5, §7, §8).

``run_coverage`` is the one entry point the CLI and the HTTP API call: it decides
single or batch from the request, takes care of idempotency keys, and writes the run
(header, drill-down and fact rows) in one unit of work. The seed's
``run_pipeline_coverage_report`` and the batch's ``run_pipeline_coverage_batch`` are
thin wrappers over it. Every number is computed by one SQL statement
(``sql/queries/coverage.sql``), in which the credit rule is written once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_coverage.calibration import calibration_week, run_calibration, send_week_fits
from pipeline_coverage.db.connection import (
    Connection,
    Cursor,
    Isolation,
    advisory_lock,
    as_uuid,
    in_transaction,
    prepares,
    records,
    replaced_settings,
    send_settings,
    sent_at_once,
    set_for_transaction,
    unit_of_work,
)
from pipeline_coverage.db.distribute import execute_for_tenant
from pipeline_coverage.errors import InputError, NotFoundError, ValidationError
from pipeline_coverage.sql import query, specialized_query
from pipeline_coverage.store import insert_run
from pipeline_coverage.tenants import SEED_DEFAULTS, RunDefaults, run_defaults
from pipeline_coverage.validation import (
    MAX_LOOKBACK_DAYS,
    TARGET_MATCHES,
    parse_choice,
    parse_date,
    parse_flag,
    parse_principal_type,
    parse_run_period,
    parse_uuid,
    parse_whole,
    required_uuid,
)

_QUERIES = "coverage"

#: For the rest of the run's transaction (docs/decisions.md): room for its aggregations
#: in memory (they spill to disk at the 4 MB default on a large tenant); no JIT (the
#: statement's cost estimate crosses jit_above_cost on a large tenant, and compiling its
#: ~300 expressions took longer than the JIT saved); and hashing rather than sorting
#: where either will do (the planner sizes each row's drill-down arrays at 8 kB a group,
#: so it would sort the ~70k credited deals of a large tenant to aggregate them into ~2k
#: rows that a hash table holds with ease). On Citus, run_tenant_statement carries the
#: same settings (sql/queries/citus.sql).
RUN_SETTINGS = {
    "work_mem": "64MB",
    "jit": "off",
    "enable_sort": "off",
}

#: A single report's statement, specialized for one principal, is prepared once per
#: connection and runs on its generic plan: planning the statement was most of a
#: single report's time, and the specialized text leaves no "for everyone" branch that
#: only a plan for the run's own values could fold away (docs/decisions.md). Without
#: the values, the planner expects a couple of deals, and would join them to the
#: stages in nested loops that a principal with thousands of deals pays for; hash
#: joins cost the same for a few. A batch's statement is sent unprepared and planned
#: for its values (execute_for_tenant).
SINGLE_SETTINGS = {
    **RUN_SETTINGS,
    "plan_cache_mode": "force_generic_plan",
    "enable_nestloop": "off",
}


class IdempotencyConflictError(InputError):
    """An idempotency key was used before with a different request."""


@dataclass(frozen=True)
class CoverageRequest:
    """What to compute: one principal's run (principal set) or everyone's (batch).

    Build it with :func:`coverage_request`, which validates every field.
    """

    tenant_id: uuid.UUID
    period_start: dt.date
    period_end: dt.date
    principal_type: str | None = None
    principal_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    by_pipeline: bool = False
    #: A group is also credited with its members' and subgroups' deals (SPEC.md §10).
    #: None (as for target_match and win_rate_lookback_days): the tenant's default,
    #: filled in by run_coverage (``tenants.run_defaults``).
    rollup: bool | None = None
    #: The day the run is "as of" (past-due deals); None: the day it is computed.
    as_of: dt.date | None = None
    target_match: str | None = None
    win_rate_lookback_days: int | None = None
    #: The period expression the dates came from (``FY2027-Q1``), if any.
    period_expression: str | None = None
    #: Computed from the deals as they stood at the end of ``as_of`` in recorded
    #: history (SPEC.md §13), not as they are now.
    as_recorded: bool = False

    @property
    def mode(self) -> str:
        return "single" if self.principal_id is not None else "batch"

    @property
    def complete(self) -> bool:
        """Whether every run option is given (none is left to the tenant's default)."""
        return None not in (self.rollup, self.target_match, self.win_rate_lookback_days)

    def with_defaults(self, defaults: RunDefaults) -> CoverageRequest:
        """The request with each option it leaves out taken from ``defaults``."""
        lookback = self.win_rate_lookback_days
        if lookback is None:
            lookback = defaults.win_rate_lookback_days
            _check_lookback(self.period_start, lookback)
        return dataclasses.replace(
            self,
            rollup=defaults.rollup if self.rollup is None else self.rollup,
            target_match=defaults.target_match if self.target_match is None else self.target_match,
            win_rate_lookback_days=lookback,
        )

    def fingerprint(self) -> bytes:
        """A digest of the request, to tell a replay from another use of a key (of the
        complete request: an option left out counts as the default it was given)."""
        fields = {k: str(v) for k, v in dataclasses.asdict(self).items()}
        # As before these options existed: keys stored then still replay.
        if not self.rollup:
            del fields["rollup"]
        if not self.as_recorded:
            del fields["as_recorded"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()


def coverage_request(
    tenant_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    principal_type: str | None = None,
    principal_id: uuid.UUID | str | None = None,
    pipeline_id: uuid.UUID | str | None = None,
    *,
    by_pipeline: bool = False,
    rollup: bool | None = None,
    as_of: dt.date | str | None = None,
    target_match: str | None = None,
    win_rate_lookback_days: int | None = None,
    period_expression: str | None = None,
    as_recorded: bool = False,
) -> CoverageRequest:
    """Validate a run's arguments (before the database is touched). The dates of a
    period expression are resolved first (``directory.tenant_period``); the expression
    is recorded with the run.

    A run option left out (``None``: ``rollup``, ``target_match``,
    ``win_rate_lookback_days``) is the tenant's default when the run is made
    (``tenants.run_defaults``); a value given is used as it is, whatever the default.
    The run records the options it was made with. ``as_recorded``: from the deals as
    they stood at the end of ``as_of`` (default: today) in recorded history."""
    tenant = required_uuid(tenant_id, "tenant_id")
    start, end = parse_run_period(period_start, period_end)
    if (principal_type is None) != (principal_id is None):
        missing = "principal_id" if principal_id is None else "principal_type"
        raise ValidationError(f"{missing}: principal_type and principal_id go together")
    kind = parse_principal_type(principal_type) if principal_type is not None else None
    principal = parse_uuid(principal_id, "principal_id", optional=True)
    by_pipeline = parse_flag(by_pipeline, "by_pipeline")
    rollup = None if rollup is None else parse_flag(rollup, "rollup")
    if by_pipeline and principal is not None:
        raise ValidationError("by_pipeline: only for a batch (a run without a principal)")
    lookback = None
    if win_rate_lookback_days is not None:
        lookback = parse_whole(
            win_rate_lookback_days, "win_rate_lookback_days", 1, MAX_LOOKBACK_DAYS
        )
        _check_lookback(start, lookback)
    return CoverageRequest(
        tenant_id=tenant,
        period_start=start,
        period_end=end,
        principal_type=kind,
        principal_id=principal,
        pipeline_id=parse_uuid(pipeline_id, "pipeline_id", optional=True),
        by_pipeline=by_pipeline,
        rollup=rollup,
        as_of=parse_date(as_of, "as_of") if as_of is not None else None,
        target_match=None
        if target_match is None
        else parse_choice(target_match, "target_match", TARGET_MATCHES),
        win_rate_lookback_days=lookback,
        # (stored as it names the period: resolving it ignored spaces around it)
        period_expression=period_expression.strip() if period_expression else None,
        as_recorded=parse_flag(as_recorded, "as_recorded"),
    )


def _check_lookback(period_start: dt.date, lookback: int) -> None:
    if (period_start - dt.date.min).days < lookback:  # the win rate's window starts before it
        raise ValidationError(
            f"win_rate_lookback_days: {lookback} days before period_start {period_start} is"
            f" before {dt.date.min}"
        )


@dataclass(frozen=True)
class RunOutcome:
    """The run a request made, or (an idempotency key's replay) the one it made before."""

    run_id: uuid.UUID
    replayed: bool = False


def run_coverage(
    conn: Connection, request: CoverageRequest, *, idempotency_key: str | None = None
) -> RunOutcome:
    """Compute and store a run for ``request``; one unit of work (see ``unit_of_work``).

    A batch runs at REPEATABLE READ when it owns the transaction, so all its rows see
    one snapshot. With ``idempotency_key``, the first request with that key computes
    the run and a repeat of the same request returns it (``replayed``); the same key
    with another request is an :class:`IdempotencyConflictError`. Concurrent requests
    with one key queue on a lock taken before the run's snapshot, so exactly one
    computes and the others see its run.

    Options the request leaves out (None) are the tenant's default run options, read
    first (``tenants.run_defaults``); a request is compared with a key's first one as
    completed so (after the tenant's defaults changed, the same body is another
    request).
    """
    if not request.complete:
        request = request.with_defaults(run_defaults(conn, request.tenant_id))
    isolation: Isolation | None = "REPEATABLE READ" if request.mode == "batch" else None
    callers = in_transaction(conn)  # then the run's planner settings are put back after it
    if idempotency_key is None:
        with unit_of_work(conn, isolation=isolation) as cur:
            return RunOutcome(_write(cur, request, restore=callers))
    if not 1 <= len(idempotency_key) <= 255:
        raise ValidationError("idempotency_key: must be 1 to 255 characters")
    params = {
        "tenant_id": str(request.tenant_id),
        "key": idempotency_key,
        "request_hash": request.fingerprint(),
    }
    with (
        advisory_lock(conn, f"{request.tenant_id}/{idempotency_key}"),
        unit_of_work(conn, isolation=isolation) as cur,
    ):
        cur.execute(query("idempotency", "find_key"), params)
        found = records(cur)
        if found:
            if bytes(found[0]["request_hash"]) != params["request_hash"]:
                raise IdempotencyConflictError("idempotency_key: used before with another request")
            return RunOutcome(as_uuid(found[0]["run_id"]), replayed=True)
        run_id = _write(cur, request, restore=callers)
        cur.execute(query("idempotency", "insert_key"), {**params, "run_id": str(run_id)})
    return RunOutcome(run_id)


def run_of_key(conn: Connection, tenant_id: uuid.UUID, idempotency_key: str) -> uuid.UUID | None:
    """The run an idempotency key made for the tenant, if it made one (committed)."""
    with unit_of_work(conn) as cur:
        cur.execute(
            query("idempotency", "find_key"), {"tenant_id": str(tenant_id), "key": idempotency_key}
        )
        found = records(cur)
    return as_uuid(found[0]["run_id"]) if found else None


def _write(cur: Cursor, request: CoverageRequest, *, restore: bool = False) -> uuid.UUID:
    """Check the scope, then write the header, the drill-down and the fact rows; with
    ``restore``, put the planner settings of the transaction back afterwards."""
    lookback = request.win_rate_lookback_days
    if request.rollup is None or request.target_match is None or lookback is None:
        raise AssertionError("a run's options are completed before it is written")
    params: dict[str, Any] = {
        "tenant_id": str(request.tenant_id),
        "principal_type": request.principal_type,
        "principal_id": str(request.principal_id) if request.principal_id else None,
        "pipeline_id": str(request.pipeline_id) if request.pipeline_id else None,
    }
    as_of = request.as_of or dt.date.today()
    period = (request.period_start, request.period_end)
    single = request.mode == "single"
    whole_pipeline = request.pipeline_id is None and not request.by_pipeline
    # The scope check and the calibration's fits go at once for a single report (the
    # week does not depend on the tenant's calendar, which only says whether they apply;
    # a batch asks for them after, only where they apply).
    week = calibration_week(period, as_of, whole_pipeline=whole_pipeline) if single else None
    fitter = cur.connection.cursor() if week is not None else None
    try:
        with sent_at_once(cur, single):
            cur.execute(query(_QUERIES, "check_scope"), {**params, "as_of": as_of})
            if fitter is not None and week is not None:
                send_week_fits(fitter, request.tenant_id, week)
        currency, rates, routed, month = _scope(cur, params)
        fits, calibration = run_calibration(
            cur, request.tenant_id, period=period, as_of=as_of, fiscal_year_start_month=month,
            whole_pipeline=whole_pipeline, rollup=request.rollup,
            target_match=request.target_match, sent=fitter,
        )  # fmt: skip
    finally:
        if fitter is not None:
            fitter.close()
    tree = "[]"
    if request.rollup and request.principal_type != "USER":  # (a rep's row does not roll up)
        cur.execute(query(_QUERIES, "group_tree"), params)
        tree = records(cur)[0]["tree"]
    generic = single and prepares(cur)  # else the statement is planned for its values
    # A single report's header, settings and statement go at once (one round trip
    # where they took three; a batch's statement is most of its time).
    together = generic and routed is None
    statement = specialized_query(
        _QUERIES, "insert_coverage", rollup=request.rollup, batch=not single,
        users=request.principal_type != "GROUP", groups=request.principal_type != "USER",
        within=request.target_match == "within", recorded=request.as_recorded,
        tenant_window=not single,
    )  # fmt: skip
    # (the routing functions bring the run's settings to the worker)
    setter = cur.connection.cursor() if routed is None else None
    try:
        with sent_at_once(cur, together):
            run_id = insert_run(
                cur, request.tenant_id, period,
                {**_parameters(request, as_of, currency, rates, _team_parents(tree)),
                 "calibration": calibration},
                run_id=uuid.uuid4() if together else None,
            )  # fmt: skip
            if setter is not None:
                send_settings(setter, SINGLE_SETTINGS if generic else RUN_SETTINGS)
            execute_for_tenant(
                cur,
                request.tenant_id,
                statement,
                {
                    **params,
                    "run_id": str(run_id),
                    "period_start": request.period_start,
                    "period_end": request.period_end,
                    "history_start": request.period_start - dt.timedelta(days=lookback),
                    "by_pipeline": request.by_pipeline,
                    "rollup": request.rollup,
                    "tree": tree,
                    "as_of": as_of,
                    "target_match": request.target_match,
                    "currency": currency,
                    "rates": json.dumps(rates),
                    "recorded_at": recorded_at(as_of) if request.as_recorded else None,
                    "calibration": fits,
                },
                routed=routed,
                # On Citus a single report's statement is prepared on the worker,
                # whatever the driver (run_tenant_prepared), where the database has it.
                prepare=generic if routed is None else single,
            )
        replaced = replaced_settings(setter) if setter is not None else None
    finally:
        if setter is not None:
            setter.close()
    if restore and replaced is not None:
        set_for_transaction(cur, replaced)
    return run_id


def _team_parents(tree: str) -> dict[str, str]:
    """Each team's parent in the tree a rolled-up run reads (``group_tree``): the team
    at depth 1 below its ancestor."""
    return {
        str(link["group_id"]): str(link["ancestor_id"])
        for link in json.loads(tree)
        if link["depth"] == 1
    }


def _parameters(
    request: CoverageRequest,
    as_of: dt.date,
    currency: str,
    rates: Mapping[str, str],
    team_parents: Mapping[str, str],
) -> Mapping[str, Any]:
    """What a run records of how it was asked for (SPEC.md §8); a rolled-up run also
    the team tree it rolled up over (``team_parents``: each team's parent), which its
    teams are shown in."""
    chosen: dict[str, Any] = {"mode": request.mode}
    if request.mode == "single":
        chosen["principal_type"] = request.principal_type
        chosen["principal_id"] = str(request.principal_id)
    chosen["pipeline_id"] = str(request.pipeline_id) if request.pipeline_id else None
    if request.mode == "batch":
        chosen["by_pipeline"] = request.by_pipeline
    return {
        **chosen,
        "period": request.period_expression,
        "period_start": request.period_start.isoformat(),
        "period_end": request.period_end.isoformat(),
        "rollup": request.rollup,
        "target_match": request.target_match,
        "win_rate_lookback_days": request.win_rate_lookback_days,
        "as_of": as_of.isoformat(),
        "currency": currency,
        "rates": dict(rates),
        # (only when set: the parameters of runs on current data stay as they were)
        **({"as_recorded": True, "recorded_at": recorded_at(as_of).isoformat()}
           if request.as_recorded else {}),
        **({"team_parents": dict(team_parents)} if request.rollup else {}),
    }  # fmt: skip


def recorded_at(as_of: dt.date) -> dt.datetime:
    """The midnight (UTC) after ``as_of``: a run as recorded on ``as_of`` sees the
    deals as they stood just before it, the end of that day — an export taken during
    the day is in it, one taken at that midnight is the next day's (SPEC.md §13)."""
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), dt.UTC)


def _scope(cur: Cursor, params: Mapping[str, Any]) -> tuple[str, dict[str, str], str | None, int]:
    """From ``check_scope``'s answer on ``cur``: the tenant's reporting currency and
    the other currencies' rates in force on ``as_of``, once the tenant, principal and
    pipeline exist; whether the run's statement is to be routed to the tenant's Citus
    worker, and how (None: not; else ``execute_for_tenant``'s ``routed``); and the month
    its fiscal year starts in."""
    [found] = records(cur)
    if not found["tenant_exists"]:
        raise NotFoundError(f"tenant_id: no tenant {params['tenant_id']}")
    if not found["principal_exists"]:
        kind = "user" if params["principal_type"] == "USER" else "group"
        raise NotFoundError(
            f"principal_id: no {kind} {params['principal_id']} in tenant {params['tenant_id']}"
        )
    if not found["pipeline_exists"]:
        raise NotFoundError(
            f"pipeline_id: no pipeline {params['pipeline_id']} in tenant {params['tenant_id']}"
        )
    return (
        str(found["currency"]),
        json.loads(found["rates"]),
        found["routed"],
        int(found["fiscal_year_start_month"]),
    )


def run_pipeline_coverage_report(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    pipeline_id: uuid.UUID | str | None = None,
    **options: Any,
) -> uuid.UUID:
    """Compute one principal's pipeline coverage for a period and store it as a run.

    The seed's entry point, with its signature and meaning. ``conn`` is a psycopg 3
    or psycopg2 connection. Arguments are validated before the database is touched;
    the run is written in one unit of work (see ``unit_of_work``). ``options`` are
    :func:`coverage_request`'s keywords (``as_of``, ``target_match``,
    ``win_rate_lookback_days``, ``rollup``). Returns the new run's id.

    The seed's report whatever the tenant's default run options: an option not given
    (or given as None) is the seed's (no roll-up, exact targets, 365 days), never the
    tenant's default (``run_coverage`` with a ``coverage_request`` takes those).
    """
    if principal_type is None or principal_id is None:
        missing = "principal_type" if principal_type is None else "principal_id"
        raise ValidationError(f"{missing}: required")
    for name, seed in SEED_DEFAULTS.as_dict().items():
        if options.get(name) is None:
            options[name] = seed
    request = coverage_request(
        tenant_id, period_start, period_end, principal_type, principal_id, pipeline_id,
        **options,
    )  # fmt: skip
    return run_coverage(conn, request).run_id


def run_pipeline_coverage_batch(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    pipeline_id: uuid.UUID | str | None = None,
    by_pipeline: bool = False,
    **options: Any,
) -> uuid.UUID:
    """Compute coverage for every principal in scope (SPEC.md §5) and store it as one run.

    One fact row per principal (with ``by_pipeline``: per principal and pipeline of the
    tenant), each equal to what ``run_pipeline_coverage_report`` gives for it with the
    same options, all from one snapshot. ``options`` as for ``coverage_request``: one
    left out is the tenant's default. Returns the id.
    """
    request = coverage_request(
        tenant_id, period_start, period_end, None, None, pipeline_id,
        by_pipeline=by_pipeline, **options,
    )  # fmt: skip
    return run_coverage(conn, request).run_id
