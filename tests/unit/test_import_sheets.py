"""The targets file (long and wide, periods in the fiscal calendar) and the teams file
(parents consistent, no cycles), no database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.sheets import (
    Membership,
    SheetTarget,
    TeamParent,
    read_targets,
    read_teams,
)

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"


def problems_of(call: object, *args: object, **kwargs: object) -> list[str]:
    with pytest.raises(LoadError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.problems


def test_long_targets_in_a_fiscal_calendar() -> None:
    targets = read_targets(EXPORTS / "targets-long.csv", fiscal_year_start_month=7)
    assert targets[0] == SheetTarget(
        line=2,
        principal="Ana Silva",
        principal_type="USER",
        period_start=dt.date(2026, 7, 1),
        period_end=dt.date(2026, 10, 1),
        amount=Decimal("250000.00"),
        pipeline=None,
        period="FY2027-Q1",
    )
    assert [
        (t.principal_type, t.period_start, t.period_end, t.amount, t.pipeline) for t in targets[1:]
    ] == [
        (None, dt.date(2026, 7, 1), dt.date(2026, 10, 1), Decimal("180000.50"), None),
        ("GROUP", dt.date(2026, 7, 1), dt.date(2027, 7, 1), Decimal("1000000.00"), "New Business"),
        (None, dt.date(2026, 11, 1), dt.date(2026, 12, 1), Decimal("80000.00"), None),
    ]


def test_wide_targets() -> None:
    targets = read_targets(EXPORTS / "targets-wide.csv", fiscal_year_start_month=7)
    assert [(t.line, t.principal, t.period, t.period_start, t.amount) for t in targets] == [
        (2, "Ana Silva", "FY2027-Q1", dt.date(2026, 7, 1), Decimal("250000.00")),
        (2, "Ana Silva", "FY2027-Q2", dt.date(2026, 10, 1), Decimal("260000.00")),
        (3, "Ben Ode", "FY2027-Q1", dt.date(2026, 7, 1), Decimal("180000.00")),
        (3, "Ben Ode", "2027-Q3", dt.date(2027, 7, 1), Decimal("90000.00")),
    ]


def test_wide_targets_from_a_workbook(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["principal", "type", "FY2026-H1", 2027])  # a year typed as a number
    sheet.append(["East", "team", 1_500_000, 2_000_000.5])
    path = tmp_path / "quota.xlsx"
    workbook.save(path)
    targets = read_targets(path, fiscal_year_start_month=2)
    assert [(t.principal_type, t.period_start, t.period_end, t.amount) for t in targets] == [
        ("GROUP", dt.date(2025, 2, 1), dt.date(2025, 8, 1), Decimal("1500000.00")),
        ("GROUP", dt.date(2027, 1, 1), dt.date(2028, 1, 1), Decimal("2000000.50")),
    ]


def test_target_problems(tmp_path: Path) -> None:
    path = tmp_path / "targets.csv"
    path.write_text(
        "principal,period,amount,type\nAna,FY2027-Q5,100,\nAna,this-quarter,100,\n"
        'Ben,2026-Q1,$100,\nBen,2026-Q1,"1,00",\nCleo,2026,5,boss\n,2026,5,\n'
        "Dan,2026-Q1,5,\ndan,2026-Q1,6,\n"
    )
    assert problems_of(read_targets, path) == [
        "targets.csv:2: period: not a period expression: 'FY2027-Q5' (for example: 2026-Q3, "
        "2026-11, 2026, FY2027, FY2027-Q1, FY2027-H2, this-quarter, last-quarter, "
        "next-quarter, this-fiscal-year)",
        "targets.csv:3: period: 'this-quarter' is relative to the day it is read: name the "
        "period (FY2027-Q1, 2026-Q3, 2026-11, ...)",
        "targets.csv:4: amount: not an amount: '$100' (digits and a decimal point, with , "
        "between thousands, no symbols)",
        "targets.csv:5: amount: not an amount: '1,00' (digits and a decimal point, with , "
        "between thousands, no symbols)",
        "targets.csv:6: type: must be rep or team (user or group), got 'boss'",
        "targets.csv:7: principal: blank",
        "targets.csv:9: a second target for 'dan', 2026-Q1 (2026-01-01 to 2026-04-01) "
        "(also line 8, 2026-Q1)",
    ]
    path.write_text("principal,FY2027-Q1,Region\nAna,1,x\n")
    assert problems_of(read_targets, path) == [
        "targets.csv:1: Region: not a period (not a period expression: 'Region' (for example: "
        "2026-Q3, 2026-11, 2026, FY2027, FY2027-Q1, FY2027-H2, this-quarter, last-quarter, "
        "next-quarter, this-fiscal-year)); a wide sheet's headers are principal and periods"
    ]


def test_teams() -> None:
    teams = read_teams(EXPORTS / "teams.csv")
    assert teams.memberships == (
        Membership(2, "Ana Silva", "East"),
        Membership(3, "Ben Ode", "East"),
        Membership(4, "Cleo Park", "West"),
        Membership(5, "Ana Silva", "Strategic"),
    )
    assert teams.parents == (
        TeamParent(2, "East", "Enterprise"),
        TeamParent(4, "West", "Enterprise"),
    )


def test_a_team_has_one_parent(tmp_path: Path) -> None:
    path = tmp_path / "teams.csv"
    path.write_text("rep,team,parent_team\nAna,East,Enterprise\nBen,east,SMB\nCleo,East,\n")
    assert problems_of(read_teams, path) == [
        "teams.csv:3: parent_team: 'East''s parent is 'SMB' here, 'Enterprise' on line 2 "
        "(a team has one parent)",
        "teams.csv:4: parent_team: 'East''s parent is none here, 'Enterprise' on line 2 "
        "(a team has one parent)",
    ]


def test_team_cycles_are_named(tmp_path: Path) -> None:
    path = tmp_path / "teams.csv"
    path.write_text(
        "rep,team,parent_team\nAna,East,Enterprise\nBen,Enterprise,Global\nCleo,Global,East\n"
        "Dan,Solo,Solo\nEve,West,Global\n"
    )
    assert problems_of(read_teams, path) == [
        "teams.csv:2: parent_team: makes a cycle: East -> Enterprise -> Global -> East",
        "teams.csv:3: parent_team: makes a cycle: Enterprise -> Global -> East -> Enterprise",
        "teams.csv:4: parent_team: makes a cycle: Global -> East -> Enterprise -> Global",
        "teams.csv:5: parent_team: makes a cycle: Solo -> Solo",
    ]


def test_teams_blank_and_repeated(tmp_path: Path) -> None:
    path = tmp_path / "teams.csv"
    path.write_text("Rep,Team\nAna,\n,East\nBen,East\nben,east\n")
    assert problems_of(read_teams, path) == [
        "teams.csv:2: Team: blank",
        "teams.csv:3: Rep: blank",
        "teams.csv:5: 'ben' in 'East' again (also line 4)",
    ]
