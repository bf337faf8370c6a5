"""Pure functions: parsing, rendering, periods, settings (no database)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from pipeline_coverage.config import ROOT_DATA_DIR, Settings, default_data_dir
from pipeline_coverage.db.distribute import run_statement_settings
from pipeline_coverage.errors import LoadError, ValidationError
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.periods import quarter_of
from pipeline_coverage.render import (
    CSV_COLUMNS,
    coverage_text,
    money,
    run_csv,
    run_json,
    run_table,
)
from pipeline_coverage.reports.coverage import RUN_SETTINGS, SINGLE_SETTINGS, coverage_request
from pipeline_coverage.sql import parse_named_queries, queries, specialize
from pipeline_coverage.store import CoverageRow, CoverageRun, Exclusion
from pipeline_coverage.tenants import SEED_DEFAULTS
from pipeline_coverage.validation import parse_date, parse_period, parse_uuid


def test_named_queries_split_on_name_lines() -> None:
    text = "-- name: first\n-- Purpose.\nSELECT 1;\n\n-- name: second\nSELECT 2;\n"
    assert parse_named_queries(text, "x.sql") == {
        "first": "-- Purpose.\nSELECT 1;\n",
        "second": "SELECT 2;\n",
    }
    with pytest.raises(ValueError, match="twice"):
        parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql")
    with pytest.raises(ValueError, match="no '-- name:'"):
        parse_named_queries("SELECT 1;", "x.sql")


def test_shipped_queries_load_from_the_package() -> None:
    assert {"check_scope", "insert_coverage"} <= set(queries("coverage"))
    assert {"insert_run", "get_run", "run_deals", "prune_runs"} <= set(queries("runs"))


def test_specialize_keeps_or_drops_the_flagged_lines() -> None:
    text = "SELECT a,\n  -- if rollup\n  b,\n  -- end if\n  -- unless rollup: NULL AS b,\n  c\n"
    assert specialize(text, rollup=True) == "SELECT a,\n  b,\n  -- unless rollup: NULL AS b,\n  c\n"
    assert specialize(text, rollup=False) == "SELECT a,\n  NULL AS b,\n  c\n"
    with pytest.raises(ValueError, match="no value for flag 'rollup'"):
        specialize(text)
    with pytest.raises(ValueError, match="without '-- end if'"):
        specialize("-- if rollup\nx\n", rollup=True)
    with pytest.raises(ValueError, match="line 1: '-- end if' without"):
        specialize("-- end if\n", rollup=True)
    with pytest.raises(ValueError, match="line 2: '-- if' inside"):
        specialize("-- if rollup\n-- if rollup\n", rollup=True)


BATCH_FLAGS = {
    "rollup": False, "batch": True, "users": True, "groups": True, "within": False,
    "recorded": False, "tenant_window": True,
}  # fmt: skip


def test_the_run_statement_specializes_without_its_rollup_parts() -> None:
    whole = queries("coverage")["insert_coverage"]
    plain = specialize(whole, **BATCH_FLAGS)
    rolled = specialize(whole, **{**BATCH_FLAGS, "rollup": True})
    for name in ("tree", "rolled_members", "rolled_up", "member_links", "member_targets"):
        assert f"{name} AS (" in rolled
        assert f"{name} AS (" not in plain
    for text in (plain, rolled):
        assert "-- if" not in text
        assert "-- end if" not in text
    assert "-- unless rollup" not in plain
    assert "-- unless within" not in plain
    assert "NULL::numeric AS member_target_amount" in plain
    assert "mt.member_target_amount" in rolled
    within = specialize(whole, **{**BATCH_FLAGS, "within": True})
    assert "overlapping_targets AS (" in within
    assert "overlapping_targets" not in plain
    assert "NULL::text[] AS target_overlaps" in plain


def test_a_single_reports_statement_keeps_only_its_principals_conditions() -> None:
    """For one user, the deals are found by owner or assignee only, and the targets by
    the principal: no "for everyone" branch (which a generic plan could not fold away,
    and which would keep it from the owner/assignee indexes), no group conditions."""
    whole = queries("coverage")["insert_coverage"]
    user = specialize(whole, **{**BATCH_FLAGS, "batch": False, "groups": False})
    group = specialize(whole, **{**BATCH_FLAGS, "batch": False, "users": False})
    batch = specialize(whole, **BATCH_FLAGS)
    everyone = "OR %(principal_id)s::uuid IS NULL"
    assert batch.count(everyone) == 2
    assert everyone not in user
    assert everyone not in group
    assert "d.owned_by_user_id = %(principal_id)s::uuid" in user
    assert "d.owned_by_group_id = %(principal_id)s::uuid" not in user
    assert "d.owned_by_group_id = %(principal_id)s::uuid" in group
    assert "d.owned_by_user_id = %(principal_id)s::uuid" not in group
    assert "st.principal_id = %(principal_id)s::uuid" in user


def test_the_citus_function_carries_the_run_settings() -> None:
    """On Citus the run's settings are SET clauses of run_tenant_statement, with the
    one that lets its statement write the tenant's shards by name."""
    assert sorted(run_statement_settings()) == sorted(
        [f"{name}={value}" for name, value in RUN_SETTINGS.items()]
        + ["citus.enable_manual_changes_to_shards=on"]
    )
    # A single report's function (its statement prepared on the worker): the single
    # report's settings, generic plan and no nested loops included.
    assert sorted(run_statement_settings("create_tenant_prepared")) == sorted(
        [f"{name}={value}" for name, value in SINGLE_SETTINGS.items()]
        + ["citus.enable_manual_changes_to_shards=on"]
    )


@pytest.mark.parametrize(
    ("day", "quarter"),
    [
        (dt.date(2026, 1, 1), (dt.date(2026, 1, 1), dt.date(2026, 4, 1))),
        (dt.date(2026, 3, 31), (dt.date(2026, 1, 1), dt.date(2026, 4, 1))),
        (dt.date(2026, 11, 25), (dt.date(2026, 10, 1), dt.date(2027, 1, 1))),
        (dt.date(2026, 12, 31), (dt.date(2026, 10, 1), dt.date(2027, 1, 1))),
    ],
)
def test_quarters_are_half_open(day: dt.date, quarter: tuple[dt.date, dt.date]) -> None:
    assert quarter_of(day) == quarter


def test_argument_parsing() -> None:
    some = uuid.uuid4()
    assert parse_uuid(str(some), "x") == some
    assert parse_uuid(None, "x", optional=True) is None
    with pytest.raises(ValidationError, match="x: required"):
        parse_uuid(None, "x")
    assert parse_date("2024-02-29", "d") == dt.date(2024, 2, 29)
    for bad in ("2023-02-29", "20240101", "2024-1-01", 20240101, "2026-W01-1", "2026-001"):
        with pytest.raises(ValidationError, match="d: not a date"):
            parse_date(bad, "d")
    with pytest.raises(ValidationError, match="half-open"):
        parse_period("2026-04-01", "2026-04-01")


def test_settings_prefer_the_flag_then_the_environment() -> None:
    env = {"DATABASE_URL": "postgresql://env/db", "PIPELINE_COVERAGE_DATA_DIR": "/tmp/pc"}
    assert Settings.from_env("postgresql://flag/db", env).database_url == "postgresql://flag/db"
    assert Settings.from_env(None, env).database_url == "postgresql://env/db"
    assert Settings.from_env(None, env).data_dir == Path("/tmp/pc")
    assert Settings.from_env(None, {}).database_url is None


def test_root_keeps_embedded_data_under_var_lib() -> None:
    assert default_data_dir(euid=0) == ROOT_DATA_DIR
    assert default_data_dir(euid=1000) != ROOT_DATA_DIR


def test_money_and_coverage_rendering() -> None:
    assert money(Decimal("1234567.5")) == "1,234,567.50"
    assert money(None) == "—"
    assert coverage_text(Decimal("2.5")).plain == "2.50x"
    assert coverage_text(Decimal("0.5")).style == "red"
    assert coverage_text(Decimal("3")).style == "green"
    assert coverage_text(None).plain == "no target"


def _values(
    target: Decimal | None, open_amount: Decimal, coverage: Decimal | None
) -> dict[str, Decimal | int | None]:
    """The seed's three metrics set, every other one of the registry left empty."""
    values: dict[str, Decimal | int | None] = dict.fromkeys(NAMES)
    values.update(target_amount=target, open_amount=open_amount, coverage_ratio=coverage)
    return values


def _run() -> CoverageRun:
    row = CoverageRow(
        "USER",
        uuid.UUID(int=1),
        "Alice",
        None,
        None,
        _values(Decimal("1000.00"), Decimal("1250.50"), Decimal("1.2505")),
    )
    return CoverageRun(
        uuid.UUID(int=9),
        uuid.UUID(int=8),
        "Acme",
        "PIPELINE_COVERAGE",
        dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        dt.date(2026, 1, 1),
        dt.date(2026, 4, 1),
        {"mode": "single"},
        (row,),
        1,
    )


def test_json_carries_money_as_decimal_strings() -> None:
    document = json.loads(run_json(_run()), parse_float=lambda text: pytest.fail(text))
    assert document["run_id"] == str(uuid.UUID(int=9))
    assert document["rows"][0]["open_amount"] == "1250.50"
    assert document["rows"][0]["target_amount"] == "1000.00"
    assert document["rows"][0]["coverage_ratio"] == "1.2505"


def test_csv_has_a_header_and_empty_fields_for_null() -> None:
    lines = run_csv(_run()).splitlines()
    assert lines[0].startswith("run_id,tenant_id,period_start,period_end,principal_type")
    assert lines[0].split(",") == list(CSV_COLUMNS)
    assert ",Alice,,,1000.00,1250.50,1.2505," in lines[1]
    # The other metrics and flags: empty; then the row's status and band (a row without
    # remaining_target, from before it existed: judged by its coverage_ratio).
    assert lines[1].endswith("," * (len(NAMES) - 3) + ",legacy,watch")


def test_load_error_counts_what_it_does_not_list() -> None:
    error = LoadError(["a.csv:2: x: bad"], total=5)
    assert str(error) == "a.csv:2: x: bad (and 4 more problems)"


def test_csv_defuses_spreadsheet_formulas_in_names() -> None:
    run = _run()
    evil = CoverageRow(
        "USER",
        uuid.UUID(int=2),
        "=HYPERLINK(1)",
        None,
        "+cmd",
        _values(None, Decimal("1.00"), None),
    )
    text = run_csv(CoverageRun(**{**run.__dict__, "rows": (evil,)}))
    assert ",'=HYPERLINK(1),,'+cmd,,1.00," in text


def test_run_cache_expires_and_bounds_its_size() -> None:
    from pipeline_coverage.web.cache import Rendered, RunCache

    tenant, other = uuid.UUID(int=1), uuid.UUID(int=2)
    small = Rendered(b"x" * 10, "application/json", '"a"')
    cache = RunCache(ttl=60, max_entries=2, max_bytes=100)
    cache.put(tenant, uuid.UUID(int=10), "json", small)
    assert cache.get(tenant, uuid.UUID(int=10), "json") == small
    assert cache.get(other, uuid.UUID(int=10), "json") is None  # keyed by tenant
    cache.put(tenant, uuid.UUID(int=11), "json", small)
    cache.put(tenant, uuid.UUID(int=12), "json", small)
    assert cache.get(tenant, uuid.UUID(int=10), "json") is None  # evicted: 2 entries at most
    cache.put(tenant, uuid.UUID(int=13), "json", Rendered(b"x" * 26, "text/csv", '"b"'))
    assert cache.get(tenant, uuid.UUID(int=13), "json") is None  # over a quarter: not kept
    assert RunCache(ttl=0).get(tenant, uuid.UUID(int=10), "json") is None
    expired = RunCache(ttl=-1)
    expired.put(tenant, uuid.UUID(int=10), "json", small)
    assert expired.get(tenant, uuid.UUID(int=10), "json") is None


def test_the_table_shows_rows_in_the_default_order() -> None:
    def row(n: int, remaining: str | None, ratio: str | None) -> CoverageRow:
        target = None if remaining is None else Decimal("100.00")
        values = _values(target, Decimal("50.00"), None if target is None else Decimal("0.5000"))
        values["remaining_target"] = None if remaining is None else Decimal(remaining)
        values["remaining_coverage_ratio"] = None if ratio is None else Decimal(ratio)
        return CoverageRow("USER", uuid.UUID(int=n), f"Rep {n}", None, None, values)

    rows = (row(1, "10.00", "0.5000"), row(2, None, None), row(3, "0.00", None),
            row(4, "10.00", "2.0000"))  # fmt: skip
    run = CoverageRun(**{**_run().__dict__, "rows": rows})
    console = Console(width=200, record=True)
    console.print(run_table(run))
    text = console.export_text()
    order = [text.index(f"Rep {n}") for n in (3, 4, 1, 2)]
    assert order == sorted(order), "quota met, then 2.00x, then 0.50x, then no target"
    assert "quota met" in text
    assert "no target" in text


def test_migration_scripts_split_into_statements() -> None:
    from pipeline_coverage.sql import statements

    script = (
        "-- a comment;\nALTER TABLE a ADD COLUMN b int;\nCREATE FUNCTION f() RETURNS void\n"
        "LANGUAGE plpgsql AS $$\nBEGIN\n    PERFORM 1;\nEND;\n$$;\n\nSELECT 1\n;\n-- end\n"
    )
    assert statements(script) == [
        "-- a comment;\nALTER TABLE a ADD COLUMN b int;",
        "CREATE FUNCTION f() RETURNS void\nLANGUAGE plpgsql AS $$\nBEGIN\n    PERFORM 1;\n"
        "END;\n$$;",
        "SELECT 1\n;",
    ]


def test_the_demo_hints_name_the_command_as_it_can_be_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline_coverage import cli

    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "pipeline-coverage").write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(venv / "pipeline-coverage"), "demo"])
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cli._invoked_as() == ".venv/bin/pipeline-coverage"
    monkeypatch.setattr("shutil.which", lambda name: "/usr/local/bin/pipeline-coverage")
    assert cli._invoked_as() == "pipeline-coverage"  # on PATH: its name will do


def test_a_period_whose_lookback_starts_before_year_one_is_refused() -> None:
    """The win rate's window ends at the period's start: a period of the year 1 (or a
    lookback reaching before it) is an input error, not a crash computing its date."""
    tenant = uuid.uuid4()
    # A lookback left out is the tenant's, checked when the request is completed with it.
    with pytest.raises(ValidationError, match=r"^win_rate_lookback_days: 365 days before"):
        coverage_request(tenant, "0001-01-01", "0001-04-01").with_defaults(SEED_DEFAULTS)
    with pytest.raises(ValidationError, match=r"^win_rate_lookback_days: 365 days before"):
        coverage_request(tenant, "0001-01-01", "0001-04-01", win_rate_lookback_days=365)
    with pytest.raises(ValidationError, match=r"^win_rate_lookback_days: 40 days before"):
        coverage_request(tenant, "0001-02-01", "0001-03-01", win_rate_lookback_days=40)
    assert coverage_request(tenant, "0001-02-01", "0001-03-01", win_rate_lookback_days=31)
    left_out = coverage_request(tenant, "0002-01-01", "0002-04-01")
    assert left_out.win_rate_lookback_days is None
    assert left_out.with_defaults(SEED_DEFAULTS).win_rate_lookback_days == 365


@pytest.mark.parametrize(
    ("item", "sentence"),
    [
        (Exclusion("UNDATED", 2, Decimal("1000.00")),
         "2 open deals worth 1,000.00 USD have no close date and count in no period"),
        (Exclusion("UNDATED", 3, Decimal("1000.00"), no_rate=1),
         "2 open deals worth 1,000.00 USD have no close date and count in no period;"
         " 1 more has no exchange rate in force and is left out"),
        (Exclusion("NO_PROBABILITY", 2, None, no_rate=2),
         "2 open deals sit in stages without a probability but have no exchange rate in"
         " force and are left out"),
        (Exclusion("NO_AMOUNT", 1, Decimal("0.00")),
         "1 open deal in the period has no amount and counts as 0"),
        (Exclusion("PAST_DUE", 5, Decimal("12.50"), no_rate=2),
         "3 open deals worth 12.50 USD are past their close date and still count as open;"
         " 2 more have no exchange rate in force and are left out"),
        (Exclusion("NO_RATE", 2, None, no_rate=2),
         "2 deals have no exchange rate in force and are left out"),
    ],
)  # fmt: skip
def test_the_exclusions_sentence_counts_the_deals_its_amount_is_of(
    item: Exclusion, sentence: str
) -> None:
    assert item.describe("USD") == sentence


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/CSV", True),
        ("text/csv;q=0", False),
        ("text/csv, application/json", False),
        ("application/json;q=0.1, text/csv", True),
        ("text/csv;q=0.5, application/json;q=0.9", False),
        ("text/csv, */*", True),
        ("text/csv;q=0.2, */*;q=0.8", True),
        ("text/csv;q=bogus", False),
    ],
)
def test_accept_prefers_csv_only_when_it_ranks_first(accept: str, csv: bool) -> None:
    from pipeline_coverage.web.api import wants_csv

    assert wants_csv(accept) is csv


def test_the_movement_deals_csv_defuses_every_name() -> None:
    from pipeline_coverage.render import movement_deals_csv
    from pipeline_coverage.reports.movement import DealNow, DealState, MovementDeal

    state = DealState("OPEN", Decimal("1.00"), Decimal("1.00"), "USD", dt.date(2026, 1, 5),
                      "@stage", "=1+2", None, "-owner")  # fmt: skip
    now = DealNow(True, Decimal("1.00"), "USD", dt.date(2026, 1, 5), "@stage", "OPEN",
                  "=1+2", None, "-owner")  # fmt: skip
    deal = MovementDeal("USER", uuid.UUID(int=1), None, "entered", uuid.UUID(int=2), "+deal",
                        Decimal("1.00"), "ENTERED", state, state, now)  # fmt: skip
    [header, line] = movement_deals_csv([deal]).splitlines()
    values = dict(zip(header.split(","), line.split(","), strict=True))
    names = [name for name in values if name.endswith("_name")]
    assert {"a_pipeline_name", "b_pipeline_name", "now_pipeline_name"} <= set(names)
    for name in names:
        assert values[name][:1] == "'", (name, values[name])


def test_a_name_cannot_send_control_sequences_to_the_terminal() -> None:
    """A tenant or rep named with an escape sequence (or a line break) is shown with its
    control characters replaced, in the heading and in the table."""
    import io

    from pipeline_coverage.render import run_heading, run_table

    run = _run()
    evil = CoverageRow("USER", uuid.UUID(int=2), "Eve\x1b[2J\nroot", None, None,
                       _values(None, Decimal("1.00"), None))  # fmt: skip
    shown = CoverageRun(**{**run.__dict__, "tenant_name": "Acme\x1b]0;pwned\x07",
                           "rows": (evil,)})  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    title, _ = run_heading(shown)
    console.print(title)
    console.print(run_table(shown))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "Eve\ufffd[2J\ufffdroot" in text
    assert "Acme\ufffd]0;pwned\ufffd" in text


def test_a_run_as_recorded_reads_versions_and_a_run_on_current_data_does_not() -> None:
    whole = queries("coverage")["insert_coverage"]
    current = specialize(whole, **BATCH_FLAGS)
    recorded = specialize(whole, **{**BATCH_FLAGS, "recorded": True})
    assert "deal_version" not in current
    assert "FROM\n    dyno_crm.deal AS d\n" in current
    assert "FROM dyno_crm.deal_version AS v" in recorded
    assert "    dyno_crm.deal AS d\n" not in recorded


def test_a_run_is_rendered_once_for_the_requests_that_ask_meanwhile() -> None:
    """Requests that find a run's entry missing (it expired under load) share the one
    rendering in progress; its error is each caller's; a caller that goes away does
    not cancel it for the others; once done, it is kept (and, unkept, made again)."""
    import asyncio

    from pipeline_coverage.web.cache import Rendered, RunCache

    tenant, run = uuid.UUID(int=1), uuid.UUID(int=10)
    body = Rendered(b"{}", "application/json", '"a"')

    async def scenario() -> None:
        calls = 0
        release = asyncio.Event()

        async def render() -> Rendered:
            nonlocal calls
            calls += 1
            await release.wait()
            return body

        cache = RunCache(ttl=60)
        callers = [asyncio.ensure_future(cache.rendered(tenant, run, "json", render))
                   for _ in range(12)]  # fmt: skip
        await asyncio.sleep(0)
        callers[0].cancel()  # the first caller (the one that started it) goes away
        release.set()
        done = await asyncio.gather(*callers[1:])
        assert calls == 1
        assert all(result is body for result in done)
        assert callers[0].cancelled()
        assert await cache.rendered(tenant, run, "json", render) is body  # kept
        assert calls == 1
        # Another tenant's or format's rendering is its own.
        await cache.rendered(uuid.UUID(int=2), run, "json", render)
        await cache.rendered(tenant, run, "csv", render)
        assert calls == 3

        failures = 0

        async def missing() -> Rendered:
            nonlocal failures
            failures += 1
            await asyncio.sleep(0.01)
            raise LookupError("no run")

        uncached = RunCache(ttl=0)
        outcomes = await asyncio.gather(
            *(uncached.rendered(tenant, run, "json", missing) for _ in range(5)),
            return_exceptions=True,
        )
        assert failures == 1
        assert all(isinstance(o, LookupError) for o in outcomes)
        await asyncio.gather(uncached.rendered(tenant, run, "json", missing),
                             return_exceptions=True)  # fmt: skip
        assert failures == 2  # nothing kept: the next request renders (fails) again

    asyncio.run(scenario())
