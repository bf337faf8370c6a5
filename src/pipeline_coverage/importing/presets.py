"""The presets of ``pipeline-coverage import`` (SPEC.md §12): Salesforce (API names,
as Data Loader and ``sf data export`` write them), a Salesforce report export, a
HubSpot deals export and a Pipedrive deals export; and format detection from a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.deals import SKIP, DealFormat, State
from pipeline_coverage.importing.tabular import open_table
from pipeline_coverage.importing.values import DateFormat, fold

ISO = "%Y-%m-%d"

#: Salesforce's standard opportunity stages and their default probabilities.
SALESFORCE_STAGE_PROBABILITIES: Mapping[str, int] = {
    "Prospecting": 10,
    "Qualification": 10,
    "Needs Analysis": 20,
    "Value Proposition": 50,
    "Id. Decision Makers": 60,
    "Perception Analysis": 70,
    "Proposal/Price Quote": 75,
    "Negotiation/Review": 90,
    "Closed Won": 100,
    "Closed Lost": 0,
}
#: HubSpot's default sales pipeline: each stage's internal id, label and probability.
HUBSPOT_STAGES: tuple[tuple[str, str, int], ...] = (
    ("appointmentscheduled", "Appointment scheduled", 20),
    ("qualifiedtobuy", "Qualified to buy", 40),
    ("presentationscheduled", "Presentation scheduled", 60),
    ("decisionmakerboughtin", "Decision maker bought-in", 80),
    ("contractsent", "Contract sent", 90),
    ("closedwon", "Closed won", 100),
    ("closedlost", "Closed lost", 0),
)

_SALESFORCE_STATES: Mapping[str, State] = {"closed won": "won", "closed lost": "lost"}
_HUBSPOT_STATES: Mapping[str, State] = {
    "closed won": "won",
    "closedwon": "won",
    "closed lost": "lost",
    "closedlost": "lost",
}


def _folded(values: Mapping[str, int]) -> dict[str, int]:
    return {fold(name): value for name, value in values.items()}


SALESFORCE = DealFormat(
    name="salesforce",
    title="Salesforce (API names)",
    columns={
        "key": ("Id",),
        "name": ("Name",),
        "owner": ("Owner.Name", "OwnerId"),
        "stage": ("StageName",),
        "is_won": ("IsWon",),
        "is_closed": ("IsClosed",),
        "amount": ("Amount",),
        "currency": ("CurrencyIsoCode",),
        "close_date": ("CloseDate",),
        "forecast_category": ("ForecastCategoryName", "ForecastCategory"),
        "probability": ("Probability",),
        "pipeline": ("RecordType.Name",),
        "created_date": ("CreatedDate",),
    },
    required=("key", "name", "stage"),
    key_falls_back_to_name=True,
    date_format=DateFormat(ISO),
    stage_states=_SALESFORCE_STATES,
    stage_probabilities=_folded(SALESFORCE_STAGE_PROBABILITIES),
)

SALESFORCE_REPORT = DealFormat(
    name="salesforce-report",
    title="Salesforce report export",
    columns={
        "key": ("Opportunity ID",),
        "name": ("Opportunity Name",),
        "owner": ("Opportunity Owner",),
        "stage": ("Stage",),
        "amount": ("Amount",),
        "currency": ("Opportunity Currency",),
        "close_date": ("Close Date",),
        "forecast_category": ("Forecast Category",),
        "probability": ("Probability (%)",),
        "pipeline": ("Opportunity Record Type",),
        "created_date": ("Created Date",),
    },
    required=("key", "name", "stage"),
    key_falls_back_to_name=True,
    date_format=DateFormat("%m/%d/%Y"),
    stage_states=_SALESFORCE_STATES,
    stage_probabilities=_folded(SALESFORCE_STAGE_PROBABILITIES),
    footer=True,
)

HUBSPOT = DealFormat(
    name="hubspot",
    title="HubSpot deals export",
    columns={
        "key": ("Record ID", "hs_object_id"),
        "name": ("Deal Name", "dealname"),
        "owner": ("Deal owner", "hubspot_owner_id"),
        "stage": ("Deal Stage", "dealstage"),
        "amount": ("Amount",),
        "currency": ("Currency", "deal_currency_code"),
        "close_date": ("Close Date", "closedate"),
        "forecast_category": ("Forecast category", "hs_forecast_category"),
        "probability": ("Deal probability", "hs_deal_stage_probability"),
        "pipeline": ("Pipeline",),
        "created_date": ("Create Date", "createdate"),
    },
    required=("key", "name", "stage"),
    date_format=DateFormat(ISO, ignore_time=True),
    stage_states=_HUBSPOT_STATES,
    stage_probabilities={
        fold(name): probability
        for stage_id, label, probability in HUBSPOT_STAGES
        for name in (stage_id, label)
    },
    probability_scale=100,
)

PIPEDRIVE = DealFormat(
    name="pipedrive",
    title="Pipedrive deals export",
    columns={
        "key": ("Deal - ID",),
        "name": ("Deal - Title",),
        "owner": ("Deal - Owner",),
        "stage": ("Deal - Stage",),
        "status": ("Deal - Status",),
        "amount": ("Deal - Value",),
        "currency": ("Deal - Currency",),
        "close_date": ("Deal - Expected close date",),
        "won_date": ("Deal - Won time",),
        "lost_date": ("Deal - Lost time",),
        "probability": ("Deal - Probability",),
        "pipeline": ("Deal - Pipeline",),
        "created_date": ("Deal - Deal created",),
    },
    required=("key", "name", "stage", "status"),
    date_format=DateFormat(ISO, ignore_time=True),
    statuses={"open": "open", "won": "won", "lost": "lost", "deleted": SKIP},
    categories={},
)

#: The presets by the name ``--format`` takes.
PRESETS: Mapping[str, DealFormat] = {
    preset.name: preset for preset in (SALESFORCE, SALESFORCE_REPORT, HUBSPOT, PIPEDRIVE)
}


def detect(keys: set[str] | tuple[str, ...], file: str = "the file") -> DealFormat:
    """The one preset whose required columns a header (its folded names) has.

    Raises :class:`LoadError` when none or several fit, saying for each preset which
    required columns it misses.
    """
    fitting = [preset for preset in PRESETS.values() if not preset.missing(keys)]
    if len(fitting) == 1:
        return fitting[0]
    if fitting:
        names = ", ".join(preset.name for preset in fitting)
        raise LoadError(
            [f"{file}:1: the header fits several formats ({names}); name one with --format"]
        )
    misses = "; ".join(
        f"{preset.name} misses {', '.join(preset.missing(keys))}" for preset in PRESETS.values()
    )
    raise LoadError(
        [
            f"{file}:1: not a known export (no preset's required columns are all there: "
            f"{misses}); name a mapping file with --format"
        ]
    )


def detect_format(path: Path | str, *, sheet: str | None = None) -> DealFormat:
    """The preset that fits ``path``'s header (see :func:`detect`)."""
    with open_table(path, sheet=sheet) as table:
        return detect(table.keys, table.file)
