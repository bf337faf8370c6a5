"""The CLI and the dashboard show a run's rows alike: the same status, the same band and
the same order, under bands configured away from the default (PIPELINE_COVERAGE_BANDS)
and on rows at each band's edge, of every status — quota met, no target, a coverage,
and a run stored before remaining_target existed (legacy).

The dashboard is read in a real browser (its table's pills, its chart's colours, its
rows' order); the CLI by its CSV and its table; both must say what presentation.py
decides, and the edges are checked against the rule itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from rich.console import Console
from rich.text import Text

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.config import Settings, WebSettings
from pipeline_coverage.periods import quarter_of
from pipeline_coverage.presentation import Bands
from pipeline_coverage.render.terminal import run_table
from pipeline_coverage.store import get_run
from tests.e2e.test_dashboard import browser, chart, sign_in  # noqa: F401 (a fixture)
from tests.factory import Crm
from tests.integration.test_cli import cli

pytestmark = pytest.mark.slow
BANDS = "1.5,2.5"
#: The dashboard's colours (dashboard.js COLORS) and the terminal's (render.terminal).
COLORS = {"short": "#d64545", "watch": "#e0a100", "healthy": "#2f9e44",
          "quota_met": "#2f9e44", "no_target": "#adb5bd"}  # fmt: skip
TERMINAL = {"short": "red", "watch": "yellow", "healthy": "green"}
#: Each rep: its open amount against a target of 100.00 (None: no target), won amount,
#: and the status and band the rule gives it under bands 1.5 and 2.5.
REPS = {
    "Met": ("10.00", "120.00", "quota_met", None),
    "Edge healthy": ("250.00", None, "coverage", "healthy"),
    "Tie A": ("200.00", None, "coverage", "watch"),
    "Tie B": ("200.00", None, "coverage", "watch"),
    "Below healthy": ("249.00", None, "coverage", "watch"),
    "Edge low": ("150.00", None, "coverage", "watch"),
    "Below low": ("149.00", None, "coverage", "short"),
    "Legacy": ("160.00", None, "legacy", "watch"),
    "No target": ("500.00", "no target", "no_target", None),
}
#: The default order: quota met, then the best coverage (ties by name), no target last.
ORDER = ["Met", "Edge healthy", "Below healthy", "Tie A", "Tie B", "Legacy", "Edge low",
         "Below low", "No target"]  # fmt: skip


@pytest.fixture
def web_settings() -> WebSettings:
    """The server with the same bands the CLI reads."""
    return WebSettings.from_env(
        {"PIPELINE_COVERAGE_SECRET_KEY": "test", "PIPELINE_COVERAGE_BANDS": BANDS}
    )


@pytest.fixture
def bands_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's environment: the same bands."""
    monkeypatch.setenv("PIPELINE_COVERAGE_BANDS", BANDS)


def build(conn: psycopg.Connection[Any]) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A tenant with the reps of REPS and a batch run of the current quarter; the
    legacy rep's row made as a run stored before remaining_target existed."""
    crm = Crm(conn)
    tenant = crm.tenant("Agreeing")
    start, end = quarter_of(dt.date.today())
    late = end - dt.timedelta(days=1)
    pipeline = crm.pipeline(tenant, "Sales")
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    for name, (open_amount, won, _, _) in REPS.items():
        rep = crm.user(tenant, name)
        crm.deal(tenant, pipeline, open_stage, open_amount, expected=late, owner=rep)
        if won == "no target":
            continue
        crm.target(tenant, "USER", rep, start, end, "100.00")
        if won is not None:
            crm.deal(tenant, pipeline, won_stage, won, close=start, owner=rep)
    run_id = run_pipeline_coverage_batch(conn, tenant, start, end)
    conn.execute(
        "UPDATE dyno_crm.report_pipeline_coverage_fact"
        " SET remaining_target = NULL, remaining_coverage_ratio = NULL"
        " WHERE run_id = %s AND principal_name = 'Legacy'",
        (run_id,),
    )
    _, key = create_api_key(conn, tenant, "agree")
    conn.commit()
    return tenant, run_id, key


def test_the_cli_and_the_dashboard_agree_on_status_band_and_order(
    browser: Any,  # noqa: F811 (the fixture imported above)
    live_server: str,
    conn: psycopg.Connection[Any],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    bands_env: None,
) -> None:
    tenant, run_id, key = build(conn)

    # The CLI's CSV: every row's status and band, in the default order.
    shown = cli(capsys, db_url, "show", str(run_id), "--format", "csv")
    assert shown.code == 0, shown
    lines = list(csv.DictReader(io.StringIO(shown.out)))
    assert [line["principal_name"] for line in lines] == ORDER
    cli_rows = {line["principal_name"]: (line["status"], line["band"] or None) for line in lines}
    assert cli_rows == {name: (status, band) for name, (_, _, status, band) in REPS.items()}

    # The CLI's table: the same order, each coverage coloured by the same band.
    settings = Settings.from_env(environ={"PIPELINE_COVERAGE_BANDS": BANDS})
    run = get_run(conn, run_id, tenant)
    conn.commit()
    table = run_table(run, ("remaining_coverage_ratio", "coverage_ratio"), Bands(*settings.bands))
    names = list(table.columns[1].cells)
    assert [str(name) for name in names] == ORDER
    for name, remaining, coverage in zip(
        names, table.columns[2].cells, table.columns[3].cells, strict=True
    ):
        status, band = cli_rows[str(name)]
        judged = coverage if status == "legacy" else remaining
        if band is not None:
            assert isinstance(judged, Text)
            assert judged.style == TERMINAL[band], (name, judged)
        else:
            assert str(remaining) == {"quota_met": "quota met", "no_target": "no target"}[status]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert [text.index(name) for name in ORDER] == sorted(text.index(name) for name in ORDER)

    # The dashboard: its table's rows in the same order, each pill the same band or
    # status; its chart's bars coloured by the same band.
    page, _ = sign_in(browser, live_server, key, run_id)
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('#coverage-table tbody tr')].map(tr => {"
        " const cell = tr.querySelector('td[data-metric=remaining_coverage_ratio]');"
        " const pill = cell.querySelector('.pill');"
        " return [tr.querySelector('th').textContent, pill ? pill.className : cell.textContent]; })"
    )
    assert [name for name, _ in drawn] == ORDER
    pills = {"coverage": None, "quota_met": "pill met", "no_target": "pill none", "legacy": "—"}
    for name, pill in drawn:
        status, band = cli_rows[name]
        assert pill == (pills[status] or f"pill {band}"), (name, pill)
    bars = chart(page, "coverageChart")
    assert bars["labels"] == [name for name in ORDER if cli_rows[name][0] != "no_target"]
    for name, color in zip(bars["labels"], bars["datasets"][0]["colors"], strict=True):
        status, band = cli_rows[name]
        assert color == COLORS[band or status], (name, color)
    assert bars["reference"] == 2.5  # the configured healthy band
    assert chart(page, "noTargetChart")["labels"] == ["No target"]
    page.close()


def test_the_bands_are_read_the_same_way_by_the_cli_and_the_server() -> None:
    environ = {"PIPELINE_COVERAGE_BANDS": " 0.8, 2.25 ", "PIPELINE_COVERAGE_SECRET_KEY": "x"}
    assert Settings.from_env(environ=environ).bands == (Decimal("0.8"), Decimal("2.25"))
    web = WebSettings.from_env(environ)
    assert web.bands == (Decimal("0.8"), Decimal("2.25"))
    assert (web.low, web.healthy) == (0.8, 2.25)
