"""Mapping files: a TOML file that says how to read any other CRM's CSV or XLSX export
(SPEC.md §12), checked on its own before any export is read.

::

    date_format = "%Y-%m-%d"          # strptime; default ISO

    [columns]                         # field = "column", "{column} template" or a list
    id = "opportunity_id"             #   of alternatives (the first the header has)
    name = "{product} / {account}"
    stage = "deal_stage"

    [stages]                          # stage = "open" | "won" | "lost",
    Won = "won"                       #   or { state = "...", probability = 0..100 }
    Prospecting = { state = "open", probability = 10 }

    [statuses]                        # with a status column: "open"|"won"|"lost"|"skip"
    [categories]                      # "commit"|"best_case"|"pipeline"|"omitted"|"none"
    [teams]                           # the teams file's columns: rep, team, parent_team

Top-level keys: ``preset`` (start from a preset and change or add to it),
``date_format``, ``default_pipeline`` (default ``Sales``), ``probability_scale`` (1, or
100 for probabilities written 0-1), ``name`` (how the summary names the format).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.deals import (
    FIELDS,
    FORECAST_CATEGORIES,
    SKIP,
    STATES,
    DealFormat,
    State,
    TeamColumns,
    parse_template,
)
from pipeline_coverage.importing.presets import PRESETS, SALESFORCE, SALESFORCE_REPORT, detect
from pipeline_coverage.importing.tabular import open_table
from pipeline_coverage.importing.values import (
    MAX_PROBLEMS,
    DateFormat,
    check_date_format,
    fold,
    shown,
)

#: A mapping's name of each field (``id`` is a deal's identity, its ``key``).
MAPPING_FIELDS = {("id" if name == "key" else name): name for name in FIELDS}
_TOP = {
    "preset",
    "name",
    "date_format",
    "default_pipeline",
    "probability_scale",
    "columns",
    "stages",
    "statuses",
    "categories",
    "teams",
}
_CATEGORY_VALUES = {"commit", "best_case", "pipeline", "omitted", "none"}
_TOML_LINE = re.compile(r"\(at line (?P<line>[0-9]+), column (?P<column>[0-9]+)\)$")


class _Checker:
    """Problems of a mapping file, each at the line of its key where one is found."""

    def __init__(self, path: Path, text: str) -> None:
        self.file = path.name
        self.lines = text.splitlines()
        self.problems: list[str] = []

    def line_of(self, table: str | None, key: str | None) -> int | None:
        current: str | None = None
        header = re.compile(r"\s*\[\s*([^\]]+?)\s*\]")
        for number, line in enumerate(self.lines, start=1):
            found = header.match(line)
            if found:
                current = found[1].strip('"')
                if key is None and current == table:
                    return number
                continue
            if key is None or current != table:
                continue
            stripped = line.lstrip()
            for quoted in (key, f'"{key}"', f"'{key}'"):
                if stripped.startswith(quoted) and stripped[len(quoted) :].lstrip().startswith("="):
                    return number
        return None

    def add(self, table: str | None, key: str | None, reason: str) -> None:
        line = self.line_of(table, key)
        where = f"{self.file}:{line}" if line else self.file
        name = f"[{table}] {key}" if table and key else (table and f"[{table}]") or key
        self.problems.append(f"{where}: {name}: {reason}")


def load_mapping(path: Path | str) -> DealFormat:
    """The format a mapping file describes. Raises :class:`LoadError` listing every
    problem of the file (``maven.toml:7: [stages] Won: ...``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LoadError([f"{path.name}: cannot read ({exc.strerror or exc})"]) from exc
    except UnicodeDecodeError as exc:
        raise LoadError([f"{path.name}: not UTF-8 text ({exc.reason})"]) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE.search(message)
        if found:
            reason = message[: found.start()].rstrip()
            raise LoadError(
                [f"{path.name}:{found['line']}: not TOML: {reason} (column {found['column']})"]
            ) from exc
        raise LoadError([f"{path.name}: not TOML: {message}"]) from exc
    check = _Checker(path, text)
    fmt = _format(document, check, path)
    if check.problems or fmt is None:
        raise LoadError(check.problems[:MAX_PROBLEMS], total=len(check.problems))
    return fmt


def _table(document: dict[str, Any], name: str, check: _Checker) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        check.add(None, name, "must be a table ([" + name + "])")
        return {}
    return value


def _format(document: dict[str, Any], check: _Checker, path: Path) -> DealFormat | None:
    for key in document:
        if key not in _TOP:
            check.add(None, key, f"unknown key (known: {', '.join(sorted(_TOP))})")
    base: DealFormat | None = None
    preset_name = document.get("preset")
    if preset_name is not None:
        if not isinstance(preset_name, str) or fold(preset_name) not in PRESETS:
            check.add(None, "preset", f"no such preset (presets: {', '.join(PRESETS)})")
        else:
            base = PRESETS[fold(preset_name)]

    columns: dict[str, tuple[str, ...]] = {}
    for key, value in _table(document, "columns", check).items():
        if key not in MAPPING_FIELDS:
            check.add("columns", key, f"not a field (fields: {', '.join(MAPPING_FIELDS)})")
            continue
        names = [value] if isinstance(value, str) else value
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(name, str) and name.strip() for name in names)
        ):
            check.add("columns", key, "must be a column name, a template or a list of them")
            continue
        for name in names:
            try:
                parse_template(name)
            except ValueError as exc:
                check.add("columns", key, f"bad template {shown(name)}: {exc}")
        columns[MAPPING_FIELDS[key]] = tuple(name.strip() for name in names)

    by_status = "status" in columns or (base is not None and "status" in base.columns)
    by_flags = bool({"is_won", "is_closed"} & set(columns)) or (
        base is not None and "is_won" in base.columns
    )
    stage_states: dict[str, State] = {}
    stage_probabilities: dict[str, int] = {}
    for stage, value in _table(document, "stages", check).items():
        state, probability = value, None
        if isinstance(value, dict):
            unknown = set(value) - {"state", "probability"}
            if unknown:
                check.add("stages", stage, f"unknown keys {sorted(unknown)} (state, probability)")
            state, probability = value.get("state"), value.get("probability")
        if state is not None:
            if not isinstance(state, str) or fold(state) not in STATES:
                check.add("stages", stage, f"state must be open, won or lost, got {state!r}")
            else:
                stage_states[fold(stage)] = fold(state)  # type: ignore[assignment]
        elif base is None and not by_status and not by_flags:
            check.add("stages", stage, "needs a state (open, won or lost)")
        if probability is not None:
            if (
                isinstance(probability, bool)
                or not isinstance(probability, int)
                or not 0 <= probability <= 100
            ):
                check.add("stages", stage, f"probability must be 0 to 100, got {probability!r}")
            else:
                stage_probabilities[fold(stage)] = probability

    statuses: dict[str, str] = {}
    for status, value in _table(document, "statuses", check).items():
        if not isinstance(value, str) or fold(value) not in (*STATES, SKIP):
            check.add("statuses", status, f"must be open, won, lost or skip, got {value!r}")
        else:
            statuses[fold(status)] = fold(value)
    if statuses and not by_status:
        check.add("statuses", None, "a status map needs a status column ([columns] status)")

    categories: dict[str, str | None] = {}
    for category, value in _table(document, "categories", check).items():
        if not isinstance(value, str) or fold(value) not in _CATEGORY_VALUES:
            check.add(
                "categories",
                category,
                f"must be commit, best_case, pipeline, omitted or none, got {value!r}",
            )
        else:
            categories[fold(category)] = None if fold(value) == "none" else fold(value).upper()

    teams = TeamColumns()
    team_table = _table(document, "teams", check)
    for key, value in team_table.items():
        if key not in ("rep", "team", "parent_team"):
            check.add("teams", key, "unknown key (rep, team, parent_team)")
        elif not isinstance(value, str) or not value.strip():
            check.add("teams", key, "must be a column name")
    if team_table:
        teams = TeamColumns(
            **{
                key: value.strip()
                for key, value in team_table.items()
                if key in ("rep", "team", "parent_team") and isinstance(value, str)
            }
        )

    date_format = document.get("date_format")
    if date_format is not None:
        reason = (
            check_date_format(date_format)
            if isinstance(date_format, str)
            else "must be a string (a strftime format)"
        )
        if reason:
            check.add(None, "date_format", reason)
    default_pipeline = document.get("default_pipeline")
    if default_pipeline is not None and (
        not isinstance(default_pipeline, str) or not default_pipeline.strip()
    ):
        check.add(None, "default_pipeline", "must be a pipeline's name")
    scale = document.get("probability_scale")
    if scale is not None and scale not in (1, 100):
        check.add(None, "probability_scale", f"must be 1 or 100 (for 0-1), got {scale!r}")
    name = document.get("name", path.stem)
    if not isinstance(name, str):
        check.add(None, "name", "must be a string")
        name = path.stem

    if base is None:
        for required in ("name", "stage"):
            if required not in columns:
                field = "id" if required == "key" else required
                check.add("columns", None, f"needs a column for {field!r}")
    if check.problems:
        return None

    if base is None:
        base = DealFormat(
            name=name,
            title=f"mapping {path.name}",
            columns={},
            required=(),
            date_format=DateFormat("%Y-%m-%d"),
            every_stage_mapped=not by_status and not by_flags,
            categories=FORECAST_CATEGORIES,
        )
    merged_columns = {**base.columns, **columns}
    return replace(
        base,
        name=name,
        title=f"mapping {path.name}",
        columns=merged_columns,
        required=tuple(
            sorted(set(base.required) | set(columns) & {"key", "name", "stage", "status"})
        ),
        key_falls_back_to_name="key" not in merged_columns or base.key_falls_back_to_name,
        date_format=DateFormat(
            date_format if isinstance(date_format, str) else base.date_format.pattern,
            base.date_format.ignore_time,
        ),
        stage_states={**base.stage_states, **stage_states},
        stage_probabilities={**base.stage_probabilities, **stage_probabilities},
        statuses={**base.statuses, **statuses},
        categories={**base.categories, **categories},
        probability_scale=scale if isinstance(scale, int) else base.probability_scale,
        default_pipeline=(default_pipeline or base.default_pipeline).strip(),
        strict_fields=frozenset(columns),
        mapping_file=path.name,
        teams=teams if team_table else base.teams,
    )


def format_for(
    name: str | None,
    path: Path | str,
    *,
    sheet: str | None = None,
    date_format: str | None = None,
) -> DealFormat:
    """The format ``--format NAME`` (a preset, a ``.toml`` mapping file, or None to
    detect it from ``path``'s header) means for ``path``, with ``--date-format``.

    ``salesforce`` is either Salesforce preset, the one whose columns the header has.
    Raises :class:`LoadError`.
    """
    if date_format is not None:
        reason = check_date_format(date_format)
        if reason:
            raise LoadError([f"--date-format: {reason}"])
    if name is not None and name.strip().lower().endswith(".toml"):
        fmt = load_mapping(name)
    else:
        with open_table(path, sheet=sheet) as table:
            if name is None:
                fmt = detect(table.keys, table.file)
            elif fold(name) == "salesforce":
                fits = not SALESFORCE_REPORT.missing(table.keys)
                fmt = SALESFORCE_REPORT if fits and SALESFORCE.missing(table.keys) else SALESFORCE
            elif fold(name) in PRESETS:
                fmt = PRESETS[fold(name)]
            else:
                known = ", ".join(PRESETS)
                raise LoadError(
                    [f"--format: {shown(name)}: not a preset ({known}) or a .toml mapping file"]
                )
    return fmt.with_date_format(date_format)


__all__ = ["MAPPING_FIELDS", "format_for", "load_mapping"]
