"""``POST /v1/imports``: a CRM's own export (and a teams file, a quota sheet, a mapping
file) uploaded into the caller's tenant, as ``pipeline-coverage import`` does it
(SPEC §12): same readers, same checks, all or nothing.

- The tenant is the key's (or the dashboard session's), never a name from the body;
  the tenant exists, so its currency and fiscal calendar are never given.
- The upload is streamed into a private temporary folder (mode 0700), each file under
  its own name made safe, and the folder is deleted once the request is over,
  whatever happened (an error, a refusal, a client gone midway).
- The import runs in a worker thread on a pooled connection, under one of the
  tenant's **run slots** (``PIPELINE_COVERAGE_TENANT_RUNS``): an import is a heavy
  write like a run, and sharing the slots bounds a tenant's heavy work as a whole.
  The slot and the connection are taken only once the whole upload is in: a slow
  upload holds neither.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from psycopg_pool import ConnectionPool

from pipeline_coverage.db.connection import Connection, unit_of_work
from pipeline_coverage.errors import InputError, LoadError, ValidationError
from pipeline_coverage.importing.crm import (
    DEFAULT_MAX_DELETE,
    ImportOutcome,
    ImportRequest,
    import_export,
    import_summary,
)
from pipeline_coverage.validation import parse_timestamp
from pipeline_coverage.web.deps import Caller, get_pool, pooled
from pipeline_coverage.web.limits import TenantSlots, admitted
from pipeline_coverage.web.problems import MAX_REPORTED_ERRORS, ProblemError, field_problem
from pipeline_coverage.web.schemas import (
    CreatedStage,
    FieldProblem,
    ImportedDeals,
    ImportResult,
    Problem,
)
from pipeline_coverage.web.uploads import boundary_of, read_form

router = APIRouter(prefix="/v1", tags=["imports"])
PATH = "/v1/imports"
#: The file fields, each with the name a part sent without a file name is saved as.
FILES = {"deals": "deals.csv", "teams": "teams.csv", "targets": "targets.csv",
         "mapping": "mapping.toml", "history": "history.csv"}  # fmt: skip
TEXTS = (
    "format", "date_format", "sheet", "full", "max_delete", "dry_run", "exported_at", "reread",
)  # fmt: skip
PRESETS = ("salesforce", "hubspot", "pipedrive")
_REFUSED = {
    "tenant": "the tenant is the API key's; an import never names one",
    "currency": "the tenant exists: an import never changes its currency",
    "fiscal_year_start_month": "the tenant exists: an import never changes its fiscal calendar",
}
_TRUE, _FALSE = {"true", "1", "on", "yes"}, {"false", "0", "off", "no", ""}
#: The CLI's option names in the core's messages, as this endpoint's fields.
_OPTION = re.compile(r"--(format|date-format|sheet|full|max-delete|dry-run|exported-at|reread)\b")

_FILE = {"type": "string", "format": "binary"}
_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["deals"],
                "properties": {
                    "deals": {**_FILE, "description": "The CRM's deals export (.csv or .xlsx)"},
                    "teams": {**_FILE, "description": "rep,team[,parent_team] lines"},
                    "targets": {**_FILE, "description": "A quota sheet, long or wide"},
                    "history": {
                        **_FILE,
                        "description": "The CRM's own history of the deals (Salesforce's "
                        "OpportunityHistory export, .csv or .xlsx): versions of the deals "
                        "before the tenant's first export",
                    },
                    "mapping": {
                        **_FILE,
                        "description": "A TOML mapping file (its name ends in .toml), "
                        "instead of format",
                    },
                    "format": {
                        "type": "string",
                        "enum": list(PRESETS),
                        "description": "A preset; leave it out to detect it from the header",
                    },
                    "date_format": {"type": "string", "maxLength": 100, "examples": ["%d/%m/%Y"]},
                    "sheet": {"type": "string", "maxLength": 100},
                    "full": {"type": "boolean", "default": False},
                    "max_delete": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 100,
                        "default": DEFAULT_MAX_DELETE,
                    },
                    "dry_run": {"type": "boolean", "default": False},
                    "reread": {
                        "type": "boolean",
                        "default": False,
                        "description": "Read every row in full, even one unchanged since "
                        "the import that wrote its deal",
                    },
                    "exported_at": {
                        "type": "string",
                        "description": "When the export was taken (default: now): what "
                        "its changes hold from in recorded history; a tenant's exports go "
                        "in oldest first. A date (its start, UTC) or an ISO 8601 time.",
                        "examples": ["2026-01-05", "2026-01-05T09:30:00Z"],
                    },
                },
            }
        }
    },
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


def _invalid(name: str, reason: str) -> ProblemError:
    message = f"{name}: {reason}"
    return ProblemError(422, message, [field_problem(message)])


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _invalid(name, "true or false")


def _request(tenant: str, fields: dict[str, str], files: dict[str, Path]) -> ImportRequest:
    """The core's request from the form (422 for a field no import can take)."""
    if "deals" not in files:
        raise _invalid("deals", "required: the CRM's deals export")
    fmt: str | None = fields.get("format", "").strip().lower() or None
    if fmt is not None and fmt not in PRESETS:
        raise _invalid("format", f"one of {', '.join(PRESETS)} (or leave it out to detect it)")
    mapping = files.get("mapping")
    if mapping is not None:
        if fmt is not None:
            raise _invalid("format", "give format or a mapping file, not both")
        if not mapping.name.lower().endswith(".toml"):
            raise _invalid("mapping", "a TOML mapping file, whose name ends in .toml")
        fmt = str(mapping)
    max_delete = DEFAULT_MAX_DELETE
    if fields.get("max_delete", "").strip():
        try:
            max_delete = float(fields["max_delete"])
        except ValueError:
            max_delete = -1.0
        if not 0 <= max_delete <= 100:  # NaN included
            raise _invalid("max_delete", "a percentage from 0 to 100")
    exported_at = None
    if fields.get("exported_at", "").strip():
        try:
            exported_at = parse_timestamp(fields["exported_at"], "exported_at")
        except ValidationError as exc:
            raise _invalid("exported_at", str(exc).removeprefix("exported_at: ")) from exc
    return ImportRequest(
        tenant=tenant,
        deals=files["deals"],
        format=fmt,
        teams=files.get("teams"),
        targets=files.get("targets"),
        history=files.get("history"),
        date_format=fields.get("date_format") or None,
        sheet=fields.get("sheet") or None,
        full=_flag(fields, "full"),
        max_delete=max_delete,
        dry_run=_flag(fields, "dry_run"),
        exported_at=exported_at,
        reread=_flag(fields, "reread"),
    )


def import_into(conn: Connection, tenant_id: uuid.UUID, request: ImportRequest) -> ImportOutcome:
    """Import into the tenant ``tenant_id`` exactly, all or nothing.

    The core names its tenant (as the CLI's ``--tenant`` does): within one transaction
    the tenant's row is locked (it cannot be renamed or deleted meanwhile), its name
    must name no other tenant, and the import must have gone to this tenant and created
    none, or nothing is kept."""
    with unit_of_work(conn) as cur:
        cur.execute(
            "SELECT name FROM dyno_crm.tenant WHERE id = %(id)s FOR SHARE", {"id": str(tenant_id)}
        )
        row = cur.fetchone()
        if row is None:
            raise ProblemError(
                401, "the tenant no longer exists", headers={"WWW-Authenticate": "Bearer"}
            )
        name = str(row[0])
        cur.execute(
            "SELECT count(*) FROM dyno_crm.tenant WHERE lower(name) = lower(%(name)s)",
            {"name": name},
        )
        named = cur.fetchone()
        if named is None or int(named[0]) != 1:
            raise ProblemError(
                409, "another tenant has this tenant's name (in some case): rename one first"
            )
        outcome = import_export(conn, dataclasses.replace(request, tenant=name))
        if outcome.tenant_id != tenant_id or outcome.tenant_created:
            raise ProblemError(409, "the import did not resolve to this tenant; nothing was kept")
    return outcome


def _run(pool: ConnectionPool[Any], tenant_id: uuid.UUID, request: ImportRequest) -> ImportOutcome:
    with pooled(pool) as conn:
        return import_into(conn, tenant_id, request)


def _field_of(problem: str, files: dict[str, Path]) -> str:
    for name, path in files.items():
        if problem.startswith(f"{path.name}:"):
            return name
    option = _OPTION.match(problem)
    return option.group(1).replace("-", "_") if option else ""


def _as_fields(text: str) -> str:
    """A core message with the CLI's ``--max-delete`` said as the field ``max_delete``."""
    return _OPTION.sub(lambda found: found.group(1).replace("-", "_"), text)


def _load_problem(exc: LoadError, files: dict[str, Path]) -> ProblemError:
    shown = [_as_fields(problem) for problem in exc.problems[:MAX_REPORTED_ERRORS]]
    errors = [FieldProblem(field=_field_of(problem, files), message=problem) for problem in shown]
    detail = "; ".join(shown) or "import rejected"
    total = max(exc.total, len(exc.problems))
    if total > len(shown):
        detail += f" (and {total - len(shown)} more)"
    return ProblemError(422, detail, errors)


def result_of(outcome: ImportOutcome) -> ImportResult:
    deals = outcome.table("deals.csv")
    members = outcome.table("group_members.csv")
    read = outcome.read
    return ImportResult(
        dry_run=outcome.dry_run,
        tenant_id=outcome.tenant_id,
        tenant_name=outcome.tenant_name,
        format=outcome.format_title,
        source=outcome.source,
        file=read.file,
        key_column=read.key_column,
        deals_read=read.deals,
        footer_lines=read.footer_lines,
        deals=ImportedDeals(
            new=deals.inserted if deals else 0,
            updated=deals.updated if deals else 0,
            unchanged=deals.unchanged if deals else 0,
            deleted=outcome.deals_deleted,
            skipped=sum(read.skipped.values()),
            skipped_by_reason=dict(read.skipped),
        ),
        reps_created=list(outcome.users_created),
        teams_created=list(outcome.groups_created),
        pipelines_created=list(outcome.pipelines_created),
        stages_created=[
            CreatedStage(pipeline=pipeline, stage=stage, state=state, probability=probability)  # type: ignore[arg-type]
            for pipeline, stage, state, probability in outcome.stages_created
        ],
        memberships_added=members.inserted if members else 0,
        targets_set=outcome.targets_set,
        ignored_columns=list(read.ignored_columns),
        summary=import_summary(outcome),
    )


@router.post(
    "/imports",
    status_code=201,
    response_model=ImportResult,
    responses={
        200: {"model": ImportResult, "description": "A dry run: what the import would do"},
        **_PROBLEMS,
    },
    summary="Import a CRM's export into the tenant, all or nothing",
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def create_import(request: Request, caller: Caller, response: Response) -> ImportResult:
    """`multipart/form-data`: `deals` (required), `teams`, `targets`, `mapping`, `history` files;
    `format`, `date_format`, `sheet`, `full`, `max_delete`, `dry_run` fields. `201`
    with what the import did, `200` for a dry run (nothing written); `422` lists every
    problem of the files (`file:line: column: reason`) and nothing is written."""
    boundary = boundary_of(request.headers.get("content-type"))
    with tempfile.TemporaryDirectory(prefix="pipeline-coverage-import-") as folder:
        form = await read_form(
            request.stream(), boundary, Path(folder), files=FILES, texts=TEXTS, refused=_REFUSED
        )
        wanted = _request(caller.tenant_name, form.fields, form.files)
        runs: TenantSlots = request.app.state.tenant_runs
        pool = get_pool(request)
        try:
            async with runs.slot(caller.tenant_id), admitted(request):
                outcome = await anyio.to_thread.run_sync(_run, pool, caller.tenant_id, wanted)
        except LoadError as exc:
            raise _load_problem(exc, form.files) from exc
        except InputError as exc:
            message = _as_fields(str(exc))
            raise ProblemError(422, message, [field_problem(message)]) from exc
    if outcome.dry_run:
        response.status_code = 200
    return result_of(outcome)
