"""The package's exception tree.

Every error the package raises on purpose derives from :class:`PipelineCoverageError`.
:class:`InputError` and its subclasses are *expected* errors caused by the caller's
input or data (the CLI prints them on one line and exits with status 2); anything
else is unexpected (status 1).
"""

from __future__ import annotations


class PipelineCoverageError(Exception):
    """Base class of every error raised on purpose by pipeline_coverage."""


class InputError(PipelineCoverageError):
    """Bad input from the caller: arguments, files or data. Nothing was written."""


class ValidationError(InputError):
    """An argument is malformed: a bad UUID, date, enum value or period."""


class NotFoundError(InputError):
    """A referenced tenant, principal, pipeline or run does not exist (in that tenant)."""


class LoadError(InputError):
    """A CSV import was rejected; ``problems`` holds one located message per bad row."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        first = problems[0] if problems else "import rejected"
        more = self.total - 1
        suffix = f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else ""
        super().__init__(first + suffix)


class SchemaError(InputError):
    """The database has not been migrated (or is at an unknown revision)."""


class DatabaseError(PipelineCoverageError):
    """The database failed in a way the caller could not have prevented."""


class ConnectionLostError(DatabaseError):
    """The connection to the database broke (the server went away or ended it).

    Nothing of the failed unit of work was committed, so an idempotent operation may
    be retried once on a fresh connection.
    """
