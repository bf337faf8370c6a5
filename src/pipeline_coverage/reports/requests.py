"""A run's request as the CLI and the HTTP API receive it, resolved into a
:class:`~pipeline_coverage.reports.coverage.CoverageRequest`: the period (an expression
or the dates), which principal or everyone, which pipeline (by id, or by name), and
every option checked once — so both fronts accept and refuse exactly the same requests,
with the same ``field: reason`` messages. They only translate their input into it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pipeline_coverage.db.connection import Connection
from pipeline_coverage.directory import (
    require_known,
    resolve_pipeline,
    resolve_principal,
    tenant_period,
)
from pipeline_coverage.errors import ValidationError
from pipeline_coverage.reports.coverage import CoverageRequest, coverage_request
from pipeline_coverage.validation import parse_date, parse_principal_type


def resolve_request(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    period: str | None = None,
    period_start: dt.date | str | None = None,
    period_end: dt.date | str | None = None,
    principal_type: str | None = None,
    principal_id: uuid.UUID | str | None = None,
    principal_name: str | None = None,
    everyone: bool | None = None,
    pipeline_id: uuid.UUID | str | None = None,
    pipeline_name: str | None = None,
    by_pipeline: bool = False,
    rollup: bool | None = None,
    as_of: dt.date | str | None = None,
    target_match: str | None = None,
    win_rate_lookback_days: int | None = None,
    as_recorded: bool = False,
) -> CoverageRequest:
    """The run a request asks for, checked before anything is computed.

    - The period: ``period`` (an expression in the tenant's fiscal calendar, relative
      to ``as_of``), or ``period_start`` and ``period_end``; not both, not neither.
    - Who: ``principal_type`` and ``principal_id``, or ``principal_name`` (a rep or team
      by name; ``principal_type`` narrows it), or everyone (the batch). ``everyone``
      True asks for the batch explicitly (then no principal may be given), False
      requires a principal; None (the API) is the batch unless a principal is given.
    - ``by_pipeline`` only for the batch; a pipeline by id or by name, not both.
    - A principal or pipeline id the tenant does not have is a ``NotFoundError``
      naming it (the CLI's exit 2, the API's 422), before the run is computed.
    """
    single = principal_type is not None or principal_id is not None or principal_name is not None
    if everyone and single:
        raise ValidationError("all: everyone, or one principal, not both")
    if principal_name is not None and principal_id is not None:
        raise ValidationError("principal: give a principal's name or its id, not both")
    if everyone is False and principal_name is None and principal_id is None:
        raise ValidationError(
            "principal: give a principal (a name, or its type and id), or everyone"
        )
    if principal_name is None and (principal_type is None) != (principal_id is None):
        missing = "principal_id" if principal_id is None else "principal_type"
        raise ValidationError(f"{missing}: principal_type and principal_id go together")
    if by_pipeline and single:
        raise ValidationError("by_pipeline: only for a batch (a run without a principal)")
    if pipeline_name is not None and pipeline_id is not None:
        raise ValidationError("pipeline: give a pipeline's name or its id, not both")
    if period is not None and (period_start is not None or period_end is not None):
        raise ValidationError("period: give period, or period_start and period_end, not both")
    if period is None and (period_start is None or period_end is None):
        missing = "period_start" if period_start is None else "period_end"
        raise ValidationError(f"{missing}: required (or give period)")
    kind = parse_principal_type(principal_type) if principal_type is not None else None
    if period is not None:
        day = parse_date(as_of, "as_of") if as_of is not None else None
        period_start, period_end = tenant_period(conn, tenant_id, period, day)
    assert period_start is not None
    assert period_end is not None
    if principal_name is not None:
        kind, principal_id = resolve_principal(conn, tenant_id, principal_name, kind)
    if pipeline_name is not None:
        pipeline_id = resolve_pipeline(conn, tenant_id, pipeline_name)
    request = coverage_request(
        tenant_id, period_start, period_end, kind, principal_id, pipeline_id,
        by_pipeline=by_pipeline, rollup=rollup, as_of=as_of, target_match=target_match,
        win_rate_lookback_days=win_rate_lookback_days, period_expression=period,
        as_recorded=as_recorded,
    )  # fmt: skip
    if request.principal_id is not None or request.pipeline_id is not None:
        principal = None
        if request.principal_type is not None and request.principal_id is not None:
            principal = (request.principal_type, request.principal_id)
        require_known(conn, tenant_id, principal, request.pipeline_id, stored_runs=False)
    return request
