"""Pipeline coverage reports for a multi-tenant CRM on PostgreSQL.

Public API: the seed's ``run_pipeline_coverage_report``, the batch
``run_pipeline_coverage_batch`` and the readers of stored runs. Each takes the
caller's psycopg 3 or psycopg2 connection.
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
from pipeline_coverage.reports.pipeline_coverage import (
    CoverageRow,
    CoverageRun,
    get_run,
    list_runs,
    prune_runs,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)

__all__ = [
    "ConnectionLostError",
    "CoverageRow",
    "CoverageRun",
    "DatabaseError",
    "InputError",
    "LoadError",
    "NotFoundError",
    "PipelineCoverageError",
    "SchemaError",
    "ValidationError",
    "get_run",
    "list_runs",
    "prune_runs",
    "run_pipeline_coverage_batch",
    "run_pipeline_coverage_report",
]
