"""The checks of a staged import file, as set-based SQL over its staging table (text
columns and a ``line`` column): values, rows, duplicate keys, references and cycles.

Each check is a query of ``(line, problem)`` rows; :func:`raise_problems` turns them
into a :class:`LoadError` of ``file:line: column: reason`` lines (at most MAX_PROBLEMS
listed, all counted). A value a problem echoes is cut (SHOWN_CHARS).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from pipeline_coverage.db.connection import Cursor
from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.formats import CURRENCY_CODES, Column, Reference, TableSpec
from pipeline_coverage.importing.values import MAX_PROBLEMS
from pipeline_coverage.presentation import SHOWN_CHARS

# At most MAX_PROBLEMS problems are listed; the count of the rest is reported. A value
# echoed in a problem is cut after SHOWN_CHARS characters (then "…" and its length), so
# that a huge field cannot flood the report. No valid value is that long (the longest,
# a UUID in braces with a hyphen after every group of four, has 41).
#: What PostgreSQL's uuid input accepts: 32 hex digits, a hyphen allowed after any
#: group of four, optionally in braces (pg_input_is_valid says the same on PG >= 16).
UUID_RE = "^([0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}|[{][0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}[}])$"
_DATE_RE = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_NUMBER_RE = "^-?[0-9]+(\\.[0-9]+)?$"
_MONEY_RE = "^[0-9]{1,16}(\\.[0-9]{1,2})?$"
_INT_RE = "^-?[0-9]{1,9}$"
_RATE_RE = "^[0-9]{1,10}(\\.[0-9]{1,8})?$"


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` as a problem echoes it: cut after ``limit`` characters, with its length.

    :func:`shorten_sql` is the same rule in SQL.
    """
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shorten_sql(value: sql.Composable, *, quote: bool = True) -> sql.Composable:
    """SQL text echoing ``value`` in a problem (quoted as a literal, or not), cut after
    SHOWN_CHARS characters with its length: the rule of :func:`shorten`."""
    show = "quote_literal({})" if quote else "{}"
    return sql.SQL(
        "CASE WHEN length({value}) <= {limit} THEN {whole}"
        " ELSE {cut} || ' (' || length({value}) || ' characters)' END"
    ).format(
        value=value,
        limit=sql.Literal(SHOWN_CHARS),
        whole=sql.SQL(show).format(value),
        cut=sql.SQL(show).format(
            sql.SQL("left({}, {}) || '…'").format(value, sql.Literal(SHOWN_CHARS))
        ),
    )


def _problem(line: sql.Composable, column: str, reason: sql.Composable) -> sql.Composable:
    return sql.SQL("CASE WHEN {} THEN {} END").format(
        line, sql.SQL("{} || ': ' || {}").format(sql.Literal(column), reason)
    )


def _column_checks(
    column: Column, modern: bool = False, uuids_cast: bool = False
) -> list[sql.Composable]:
    """SQL expressions, each NULL or a 'column: reason' text, for one staged column;
    none for a UUID column's values when ``uuids_cast`` (left to the statements that
    cast them, see ``load._load_file``)."""
    c = sql.Identifier(column.name)
    shown = shorten_sql(c)
    checks: list[sql.Composable] = []
    if column.required:
        checks.append(
            _problem(sql.SQL("{} IS NULL").format(c), column.name, sql.Literal("required"))
        )
    if column.kind == "uuid" and not uuids_cast:
        invalid = (
            sql.SQL("NOT pg_input_is_valid({}, 'uuid')").format(c)
            if modern
            else sql.SQL("{} !~ {}").format(c, sql.Literal(UUID_RE))
        )
        checks.append(
            _problem(
                invalid,
                column.name,
                sql.SQL("'not a UUID: ' || {}").format(shown),
            )
        )
    elif column.kind == "date":
        # Shape first, then the calendar (nested CASEs fix the evaluation order, so
        # nothing is cast before its shape is known): year 1 or later, and the day
        # must exist in that month.
        valid = sql.SQL(
            "CASE WHEN {c} !~ {re} THEN false WHEN substr({c}, 1, 4)::int < 1 THEN false"
            " ELSE substr({c}, 9, 2)::int <= extract(day FROM ("
            "make_date(substr({c}, 1, 4)::int, substr({c}, 6, 2)::int, 1)"
            " + interval '1 month - 1 day'))::int END"
        ).format(c=c, re=sql.Literal(_DATE_RE))
        checks.append(
            _problem(
                sql.SQL("NOT ({})").format(valid),
                column.name,
                sql.SQL("'not a date (YYYY-MM-DD): ' || {}").format(shown),
            )
        )
    elif column.kind == "money":
        checks += _decimal_checks(
            column, c, shown, positive=False, shape=_MONEY_RE,
            shape_text="at most 16 digits and 2 decimal places",
        )  # fmt: skip
    elif column.kind == "rate":
        checks += _decimal_checks(
            column, c, shown, positive=True, shape=_RATE_RE,
            shape_text="at most 10 digits and 8 decimal places",
        )  # fmt: skip
    elif column.kind == "int":
        checks.append(
            _problem(
                sql.SQL("{} !~ {}").format(c, sql.Literal(_INT_RE)),
                column.name,
                sql.SQL("'not an integer: ' || {}").format(shown),
            )
        )
        if column.minimum is not None and column.maximum is not None:
            checks.append(
                _problem(
                    sql.SQL(
                        "CASE WHEN {c} ~ {re} THEN {c}::int NOT BETWEEN {lo} AND {hi} END"
                    ).format(
                        c=c,
                        re=sql.Literal(_INT_RE),
                        lo=sql.Literal(column.minimum),
                        hi=sql.Literal(column.maximum),
                    ),
                    column.name,
                    sql.SQL("{} || {}").format(
                        sql.Literal(f"must be between {column.minimum} and {column.maximum}, got "),
                        shorten_sql(c, quote=False),
                    ),
                )
            )
    elif column.kind == "bool":
        checks.append(
            _problem(
                sql.SQL("lower({}) NOT IN ('true', 'false')").format(c),
                column.name,
                sql.SQL("'not true or false: ' || {}").format(shown),
            )
        )
    elif column.kind == "currency":
        checks.append(
            _problem(
                sql.SQL("{} !~ '^[A-Z]{{3}}$'").format(c),
                column.name,
                sql.SQL("'not an ISO 4217 currency code (three capital letters): ' || {}").format(
                    shown
                ),
            )
        )
        checks.append(
            _problem(
                sql.SQL("{c} ~ '^[A-Z]{{3}}$' AND {c} <> ALL ({codes})").format(
                    c=c, codes=sql.Literal(list(CURRENCY_CODES))
                ),
                column.name,
                sql.SQL("'not an ISO 4217 currency code: ' || {}").format(shown),
            )
        )
    elif column.kind == "enum":
        checks.append(
            _problem(
                sql.SQL("{} NOT IN ({})").format(
                    c, sql.SQL(", ").join(map(sql.Literal, column.choices))
                ),
                column.name,
                sql.SQL("{} || {}").format(
                    sql.Literal(f"must be one of {', '.join(column.choices)}, got "), shown
                ),
            )
        )
    return checks


def _decimal_checks(
    column: Column,
    c: sql.Composable,
    shown: sql.Composable,
    *,
    positive: bool,
    shape: str,
    shape_text: str,
) -> list[sql.Composable]:
    """A number (money ``>= 0``, a rate ``> 0``) of a bounded shape. Nothing is cast
    before its shape is known: a number of a million digits is still a number here."""
    number = sql.Literal(_NUMBER_RE)
    negative = sql.SQL("left({c}, 1) = '-' AND {c} ~ '[1-9]'").format(c=c)
    wrong_sign = (
        sql.SQL("{c} !~ '[1-9]' OR left({c}, 1) = '-'").format(c=c) if positive else negative
    )
    return [
        _problem(
            sql.SQL("{} !~ {}").format(c, number),
            column.name,
            sql.SQL("'not a number: ' || {}").format(shown),
        ),
        _problem(
            sql.SQL("CASE WHEN {c} ~ {num} THEN {wrong} END").format(
                c=c, num=number, wrong=wrong_sign
            ),
            column.name,
            sql.SQL("{} || {}").format(
                sql.Literal(f"must be {'> 0' if positive else '>= 0'}, got "),
                shorten_sql(c, quote=False),
            ),
        ),
        _problem(
            # Unsigned numbers only ("-0" is money 0); a rate's sign is checked above.
            sql.SQL("CASE WHEN {c} ~ {num} AND left({c}, 1) <> '-' THEN {c} !~ {shape} END").format(
                c=c, num=number, shape=sql.Literal(shape)
            ),
            column.name,
            sql.SQL("{} || {}").format(
                sql.Literal(f"{shape_text}, got "), shorten_sql(c, quote=False)
            ),
        ),
    ]


def _row_checks(spec: TableSpec) -> list[sql.Composable]:
    if spec.table == "crm_group" and "parent_group_id" in spec.column_names:
        return [
            _problem(
                sql.SQL(
                    "CASE WHEN id ~ {re} AND parent_group_id ~ {re}"
                    " THEN id::uuid = parent_group_id::uuid ELSE false END"
                ).format(re=sql.Literal(UUID_RE)),
                "parent_group_id",
                sql.SQL("'a group cannot be its own parent'"),
            )
        ]
    if spec.table != "sales_target":
        return []
    valid_dates = sql.SQL("period_start ~ {re} AND period_end ~ {re}").format(
        re=sql.Literal(_DATE_RE)
    )
    return [
        _problem(
            sql.SQL("CASE WHEN {} THEN period_end <= period_start ELSE false END").format(
                valid_dates
            ),
            "period_end",
            sql.SQL("'must be after period_start (' || {} || '); periods are half-open'").format(
                shorten_sql(sql.Identifier("period_start"), quote=False)
            ),
        )
    ]


def value_problems(
    spec: TableSpec, stage: sql.Identifier, *, modern: bool, uuids_cast: bool = False
) -> sql.Composable:
    checks = [
        check for column in spec.columns for check in _column_checks(column, modern, uuids_cast)
    ]
    checks += _row_checks(spec)
    listed = sql.SQL(", ").join(checks)
    # The rows with a problem first (num_nonnulls evaluates the checks and allocates
    # nothing): building and unnesting an array of every row's checks cost a clean
    # file more than the checks themselves.
    return sql.SQL(
        "SELECT line, problem FROM (SELECT line, unnest(ARRAY[{}]) AS problem FROM {}"
        " WHERE num_nonnulls({}) > 0) AS p WHERE problem IS NOT NULL"
    ).format(listed, stage, listed)


def cast_value(column: Column, source: sql.Composable | None = None) -> sql.Composable:
    value = source if source is not None else sql.Identifier(column.name)
    cast = {
        "uuid": "uuid",
        "date": "date",
        "money": "numeric(18,2)",
        "rate": "numeric(18,8)",
        "int": "integer",
        "bool": "boolean",
    }.get(column.kind)
    if column.default is not None:
        value = sql.SQL("COALESCE({}, {})").format(value, sql.Literal(column.default))
    return sql.SQL("{}::{}").format(value, sql.SQL(cast)) if cast else value


def cast_key(spec: TableSpec) -> sql.Composable:
    """A staged row's key, cast to the table's types (as the key is compared there)."""
    by_name = {column.name: column for column in spec.columns}
    return sql.SQL(", ").join(cast_value(by_name[name]) for name in spec.key)


def duplicate_problems(spec: TableSpec, stage: sql.Identifier) -> sql.Composable:
    """Every row of a key after its first (by line; rows may share a line)."""
    return sql.SQL(
        "SELECT line, {what} || ' first on line ' || first_line AS problem FROM ("
        " SELECT line, row_number() OVER w AS n, first_value(line) OVER w AS first_line"
        " FROM {stage} WINDOW w AS (PARTITION BY {key} ORDER BY line)) AS d"
        " WHERE n > 1"
    ).format(
        what=sql.Literal(f"{','.join(spec.key)}: duplicate key,"),
        key=cast_key(spec),
        stage=stage,
    )


def reference_problems(
    reference: Reference,
    stage: sql.Identifier,
    targets: dict[str, sql.Composable] | None = None,
) -> sql.Composable:
    """A reference's problems; ``targets`` may name, per table, the relation to look
    the keys up in instead (on Citus: keys pulled from the distributed table)."""
    target = (targets or {}).get(reference.table, sql.Identifier("dyno_crm", reference.table))
    conditions: list[sql.Composable] = []
    if reference.table != "tenant":
        conditions.append(sql.SQL("t.tenant_id = s.tenant_id::uuid"))
    conditions += [
        sql.SQL("t.{} = s.{}::uuid").format(sql.Identifier(t), sql.Identifier(c))
        for c, t in zip(reference.columns, reference.target, strict=True)
    ]
    present = [sql.SQL("s.{} IS NOT NULL").format(sql.Identifier(c)) for c in reference.columns]
    if reference.when is not None:
        present.append(
            sql.SQL("s.{} = {}").format(
                sql.Identifier(reference.when[0]), sql.Literal(reference.when[1])
            )
        )
    # (as text: rows a query stages, load_tables' `staged`, may hold typed columns)
    shown = sql.SQL(" || '/' || ").join(
        shorten_sql(sql.SQL("s.{}::text").format(sql.Identifier(c)), quote=False)
        for c in reference.columns
    )
    in_tenant = "" if reference.table == "tenant" else " in tenant "
    reason = sql.SQL("{} || {} || {} || {}").format(
        sql.Literal(f"{'/'.join(reference.columns)}: no {reference.noun} "),
        shown,
        sql.Literal(in_tenant),
        sql.SQL("''")
        if reference.table == "tenant"
        else shorten_sql(sql.SQL("s.tenant_id::text"), quote=False),
    )
    staged: sql.Composable = sql.SQL("")
    if reference.or_staged:
        staged = sql.SQL(
            " AND NOT EXISTS (SELECT 1 FROM {stage} AS o"
            " WHERE o.tenant_id::uuid = s.tenant_id::uuid AND {matches})"
        ).format(
            stage=stage,
            matches=sql.SQL(" AND ").join(
                sql.SQL("o.{}::uuid = s.{}::uuid").format(sql.Identifier(t), sql.Identifier(c))
                for c, t in zip(reference.columns, reference.target, strict=True)
            ),
        )
    return sql.SQL(
        "SELECT s.line, {reason} AS problem FROM {stage} AS s WHERE {present}"
        " AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {conditions}){staged}"
    ).format(
        reason=reason,
        stage=stage,
        present=sql.SQL(" AND ").join(present),
        target=target,
        conditions=sql.SQL(" AND ").join(conditions),
        staged=staged,
    )


def cycle_problems(cur: Cursor, stage: sql.Identifier) -> sql.Composable:
    """The staged groups that are their own ancestor once the file is written (teams
    are a forest, SPEC.md §10). The walk runs over the staged tenants' groups copied
    into a temporary table: a recursive query over a local table, also on Citus."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.pipeline_coverage_groups"))
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE pipeline_coverage_groups ON COMMIT DROP AS"
            " SELECT g.tenant_id, g.id, g.parent_group_id FROM dyno_crm.crm_group AS g"
            " WHERE g.tenant_id = ANY({tenants}) AND g.parent_group_id IS NOT NULL"
        ).format(tenants=staged_tenants(cur, stage))
    )
    return sql.SQL(
        "WITH RECURSIVE walk (tenant_id, start_id, at_id, path) AS ("
        " SELECT g.tenant_id, g.id, g.parent_group_id, ARRAY[g.id]"
        " FROM pg_temp.pipeline_coverage_groups AS g"
        " WHERE EXISTS (SELECT 1 FROM {stage} AS s"
        "               WHERE s.tenant_id::uuid = g.tenant_id AND s.id::uuid = g.id)"
        " UNION ALL"
        " SELECT w.tenant_id, w.start_id, g.parent_group_id, w.path || g.id"
        " FROM walk AS w JOIN pg_temp.pipeline_coverage_groups AS g"
        "   ON g.tenant_id = w.tenant_id AND g.id = w.at_id"
        " WHERE w.at_id <> w.start_id AND g.id <> ALL (w.path))"
        " SELECT s.line, 'parent_group_id: makes a cycle: '"
        " || array_to_string(w.path || w.start_id, ' -> ') AS problem"
        " FROM walk AS w JOIN {stage} AS s"
        "   ON s.tenant_id::uuid = w.tenant_id AND s.id::uuid = w.start_id"
        " WHERE w.at_id = w.start_id"
    ).format(stage=stage)


def has_problems(cur: Cursor, problems: sql.Composable) -> bool:
    # A clean file is read whole either way; a count (unlike EXISTS, planned for its
    # first row) lets the planner hash the referenced keys instead of probing an
    # index once per staged row.
    cur.execute(sql.SQL("SELECT count(*) > 0 FROM ({}) AS p").format(problems))
    return bool(cur.fetchone()[0])


def raise_reference_problems(
    cur: Cursor,
    file: str,
    stage: sql.Identifier,
    references: Sequence[Reference],
    targets: dict[str, sql.Composable] | None = None,
) -> None:
    """The problems of the first of ``references`` (in declared order) that has any."""
    for reference in references:
        raise_problems(cur, file, reference_problems(reference, stage, targets))


def raise_problems(cur: Cursor, file: str, problems: sql.Composable) -> None:
    """A :class:`LoadError` of ``problems`` (a query of line and problem), if it finds
    any: ``file:line: problem``, in line order, at most MAX_PROBLEMS of them."""
    cur.execute(
        sql.SQL(
            "SELECT line, problem, count(*) OVER () FROM ({}) AS q ORDER BY line, problem LIMIT {}"
        ).format(problems, sql.Literal(MAX_PROBLEMS))
    )
    found = cur.fetchall()
    if found:
        raise LoadError(
            [f"{file}:{line}: {problem}" for line, problem, _ in found], total=int(found[0][2])
        )


def staged_tenants(cur: Cursor, stage: sql.Identifier) -> sql.Composable:
    """The tenant ids of a staged file (checked to be UUIDs), as an array literal."""
    cur.execute(
        sql.SQL("SELECT COALESCE(array_agg(DISTINCT tenant_id::uuid), '{{}}') FROM {}").format(
            stage
        )
    )
    return sql.SQL("{}::uuid[]").format(sql.Literal([str(t) for t in cur.fetchone()[0]]))


def pulled_keys(cur: Cursor, spec: TableSpec, stage: sql.Identifier) -> dict[str, sql.Composable]:
    """On Citus: the keys of every table ``spec`` refers to, for the tenants of the
    staged file, pulled into temporary tables (a router or multi-shard SELECT); the
    reference checks then anti-join them locally. Maps a table to its keys' table."""
    tenants = staged_tenants(cur, stage)
    pulled: dict[str, sql.Composable] = {}
    for table in dict.fromkeys(reference.table for reference in spec.references):
        tenant_key = "id" if table == "tenant" else "tenant_id"
        columns = dict.fromkeys(
            [tenant_key] + [c for r in spec.references if r.table == table for c in r.target]
        )
        keys = sql.Identifier(f"pipeline_coverage_keys_{table}")
        cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(keys))
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {keys} ON COMMIT DROP AS SELECT {columns} FROM {table}"
                " WHERE {tenant_key} = ANY({tenants})"
            ).format(
                keys=keys,
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                table=sql.Identifier("dyno_crm", table),
                tenant_key=sql.Identifier(tenant_key),
                tenants=tenants,
            )
        )
        pulled[table] = sql.SQL("pg_temp.{}").format(keys)
    return pulled
