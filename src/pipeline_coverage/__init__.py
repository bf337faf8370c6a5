"""Pipeline coverage reports for a multi-tenant CRM on PostgreSQL.

Public API: the seed's ``run_pipeline_coverage_report``, the batch
``run_pipeline_coverage_batch``, ``run_coverage`` (either, from a validated
``coverage_request``, with an optional idempotency key), and the readers of stored
runs and their drill-down and of the movement between two (``compare_runs``). Each
takes the caller's psycopg 3 or psycopg2 connection.
"""

from pipeline_coverage.errors import (
    ConnectionLostError,
    DatabaseError,
    InputError,
    LoadError,
    NotFoundError,
    PipelineCoverageError,
    SchemaError,
    ValidationError,
)
from pipeline_coverage.history import HistoryPoint, principal_history
from pipeline_coverage.reports.coverage import (
    CoverageRequest,
    IdempotencyConflictError,
    RunOutcome,
    coverage_request,
    run_coverage,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.reports.movement import (
    IncomparableRunsError,
    Movement,
    MovementDeal,
    MovementRow,
    compare_runs,
)
from pipeline_coverage.store import (
    CoverageRow,
    CoverageRun,
    DealCredit,
    Exclusion,
    get_run,
    list_runs,
    prune_runs,
    run_deals,
)

__all__ = [
    "ConnectionLostError",
    "CoverageRequest",
    "CoverageRow",
    "CoverageRun",
    "DatabaseError",
    "DealCredit",
    "Exclusion",
    "HistoryPoint",
    "IdempotencyConflictError",
    "IncomparableRunsError",
    "InputError",
    "LoadError",
    "Movement",
    "MovementDeal",
    "MovementRow",
    "NotFoundError",
    "PipelineCoverageError",
    "RunOutcome",
    "SchemaError",
    "ValidationError",
    "compare_runs",
    "coverage_request",
    "get_run",
    "list_runs",
    "principal_history",
    "prune_runs",
    "run_coverage",
    "run_deals",
    "run_pipeline_coverage_batch",
    "run_pipeline_coverage_report",
]
