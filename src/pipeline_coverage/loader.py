"""The import's public names where embedders have imported them from since the first
release; they live in :mod:`pipeline_coverage.importing` now (``formats``: the import
files; ``load``: ``load_directory``; ``records``: the record length cap; ``checks``:
how problems are reported)."""

from __future__ import annotations

from pipeline_coverage.importing.formats import (
    CURRENCY_CODES,
    TABLES,
    Column,
    Kind,
    Reference,
    TableSpec,
    columns,
)
from pipeline_coverage.importing.load import Progress, TableLoad, load_directory
from pipeline_coverage.importing.records import MAX_RECORD_BYTES
from pipeline_coverage.importing.values import MAX_PROBLEMS
from pipeline_coverage.presentation import SHOWN_CHARS

__all__ = [
    "CURRENCY_CODES",
    "MAX_PROBLEMS",
    "MAX_RECORD_BYTES",
    "SHOWN_CHARS",
    "TABLES",
    "Column",
    "Kind",
    "Progress",
    "Reference",
    "TableLoad",
    "TableSpec",
    "columns",
    "load_directory",
]
