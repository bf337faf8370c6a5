"""Mapping files: the Maven CRM example on a Maven-shaped sample, templates, stage
states, unmapped values, and the mapping's own problems (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.deals import StageGiven, TeamColumns, read_deals
from pipeline_coverage.importing.mapping import format_for, load_mapping
from pipeline_coverage.importing.sheets import Membership, TeamParent, read_teams

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = ROOT / "tests" / "data" / "exports"
MAVEN = ROOT / "docs" / "examples" / "maven-crm.toml"


def mapping_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "crm.toml"
    path.write_text(text)
    with pytest.raises(LoadError) as caught:
        load_mapping(path)
    return caught.value.problems


def test_maven_example_is_about_a_dozen_lines() -> None:
    lines = [
        line
        for line in MAVEN.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "["))
    ]
    assert len(lines) <= 14


def test_maven_export() -> None:
    path = EXPORTS / "maven-pipeline.csv"
    fmt = format_for(str(MAVEN), path)
    deals, summary = read_deals(path, fmt)
    assert [(d.key, d.name, d.owner, d.state, d.amount, d.close_date) for d in deals[:2]] == [
        (
            "1C1I7A6R",
            "GTX Plus Basic / Cancity",
            "Moses Frase",
            "won",
            Decimal("1054.00"),
            dt.date(2017, 3, 1),
        ),
        (
            "Z063OYW0",
            "GTXPro / Isdom",
            "Darcel Schlecht",
            "won",
            Decimal("4514.00"),
            dt.date(2017, 3, 11),
        ),
    ]
    assert [(d.stage, d.state, d.probability) for d in deals[3:]] == [
        ("Lost", "lost", None),
        ("Engaging", "open", 50),
        ("Prospecting", "open", 10),
    ]
    assert deals[4].close_date is None
    assert deals[4].amount is None
    assert deals[5].name == "GTX Basic /"  # the account is blank: the template's text stays
    assert summary.ignored_columns == ("engage_date",)
    assert summary.stages[("Sales", "Engaging")] == StageGiven("open", 50)
    assert fmt.teams == TeamColumns("sales_agent", "manager", "regional_office")
    teams = read_teams(EXPORTS / "maven-teams.csv", fmt.teams)
    assert teams.memberships[0] == Membership(2, "Anna Snelling", "Dustin Brinkmann")
    assert teams.parents[2] == TeamParent(4, "Cara Losch", "East")


def test_unmapped_stages_are_one_error_with_the_lines_to_add(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.csv"
    path.write_text(
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
        'A,x,p,a,Won,,,\nB,x,p,a,Negotiating,,,\nC,x,p,a,Negotiating,,,\nD,x,p,a,"On ""hold""",,,\n'
    )
    with pytest.raises(LoadError) as caught:
        read_deals(path, load_mapping(MAVEN))
    assert caught.value.problems == [
        "pipeline.csv: deal_stage: 2 unmapped stage values (add to [stages] of "
        "maven-crm.toml): 'Negotiating' (2 deals, first at line 3): "
        '"Negotiating" = "open|won|lost", \'On "hold"\' (1 deal, first at line 5): '
        '"On \\"hold\\"" = "open|won|lost"'
    ]


def test_templates_alternatives_statuses_and_preset(tmp_path: Path) -> None:
    mapping = tmp_path / "crm.toml"
    mapping.write_text(
        'date_format = "%d.%m.%Y"\ndefault_pipeline = "Direct"\n'
        "[columns]\nid = ['Ref', 'Number']\nname = '{Company} ({Number})'\nstage = 'Phase'\n"
        "status = 'Result'\nclose_date = 'Due'\ncategory = 'Cat'\n"
        "[statuses]\nopen = 'open'\nsigned = 'won'\ndropped = 'lost'\nspam = 'skip'\n"
        "[stages]\nDemo = { probability = 30 }\n"
    )
    problems = mapping_problems(tmp_path, mapping.read_text())
    assert problems == [
        "crm.toml:9: [columns] category: not a field (fields: id, name, owner, stage, "
        "status, is_won, is_closed, amount, currency, close_date, won_date, lost_date, "
        "forecast_category, probability, pipeline, created_date)"
    ]
    mapping.write_text(mapping.read_text().replace("category =", "forecast_category ="))
    export = tmp_path / "deals.csv"
    export.write_text(
        "Number,Company,Phase,Result,Due,Cat\n7,Acme,Demo,signed,31.03.2026,Commit\n"
        "8,Hooli,Demo,spam,,\n9,Initech,Intro,open,01.04.2026,\n"
    )
    deals, summary = read_deals(export, format_for(str(mapping), export))
    assert [(d.key, d.name, d.state, d.probability, d.pipeline, d.close_date) for d in deals] == [
        ("7", "Acme (7)", "won", 30, "Direct", dt.date(2026, 3, 31)),
        ("9", "Initech (9)", "open", None, "Direct", dt.date(2026, 4, 1)),
    ]
    assert deals[0].forecast_category == "COMMIT"
    assert summary.skipped == {"Result spam": 1}
    # A mapped column the export lacks is named with the field it was mapped to.
    export.write_text("Number,Phase,Result\n7,Demo,open\n")
    with pytest.raises(LoadError) as caught:
        read_deals(export, format_for(str(mapping), export))
    assert caught.value.problems == [
        "deals.csv:1: Company: missing column (the name of crm.toml)",
        "deals.csv:1: Due: missing column (the close_date of crm.toml)",
        "deals.csv:1: Cat: missing column (the forecast_category of crm.toml)",
    ]


def test_a_mapping_that_extends_a_preset(tmp_path: Path) -> None:
    mapping = tmp_path / "sf.toml"
    mapping.write_text('preset = "salesforce"\n[categories]\nUpside = "best_case"\n')
    export = tmp_path / "opps.csv"
    export.write_text("Id,Name,StageName,ForecastCategoryName\n1,a,Prospecting,Upside\n")
    (deal,) = read_deals(export, format_for(str(mapping), export))[0]
    assert (deal.forecast_category, deal.probability) == ("BEST_CASE", 10)


def test_mapping_problems(tmp_path: Path) -> None:
    assert mapping_problems(tmp_path, "[columns]\nname = \n") == [
        "crm.toml:2: not TOML: Invalid value (column 8)"
    ]
    assert mapping_problems(
        tmp_path,
        "preset = 'zoho'\ndate_format = '%Y'\ncolour = 1\n[columns]\nname = '{a'\n"
        "[stages]\nWon = 'closed'\nLost = { state = 'lost', probability = 120 }\n"
        "[categories]\nUpside = 'maybe'\n[teams]\nboss = 'manager'\n",
    ) == [
        "crm.toml:3: colour: unknown key (known: categories, columns, date_format, "
        "default_pipeline, name, preset, probability_scale, stages, statuses, teams)",
        "crm.toml:1: preset: no such preset (presets: salesforce, salesforce-report, "
        "hubspot, pipedrive)",
        "crm.toml:5: [columns] name: bad template '{a': expected '}' before end of string",
        "crm.toml:7: [stages] Won: state must be open, won or lost, got 'closed'",
        "crm.toml:8: [stages] Lost: probability must be 0 to 100, got 120",
        "crm.toml:10: [categories] Upside: must be commit, best_case, pipeline, omitted or "
        "none, got 'maybe'",
        "crm.toml:12: [teams] boss: unknown key (rep, team, parent_team)",
        "crm.toml:2: date_format: not a date format: '%Y' (a strftime format with a year, "
        "a month and a day, e.g. %d.%m.%Y)",
        "crm.toml:4: [columns]: needs a column for 'stage'",
    ]
    assert mapping_problems(tmp_path, "[columns]\nid = 'x'\n[stages]\nWon = {}\n") == [
        "crm.toml:4: [stages] Won: needs a state (open, won or lost)",
        "crm.toml:1: [columns]: needs a column for 'name'",
        "crm.toml:1: [columns]: needs a column for 'stage'",
    ]


def test_an_unknown_format_name(tmp_path: Path) -> None:
    export = tmp_path / "deals.csv"
    export.write_text("a\n")
    with pytest.raises(LoadError, match=r"--format: 'zoho': not a preset"):
        format_for("zoho", export)
