"""The import files (SPEC.md §4, docs/import-format.md): each file's table, columns,
their kinds and allowed values, its key and its references, in load order.

This is what everything describing the format reads — the checks, the demo, the bench's
generator, the docs' tests — and nothing here touches a file or the database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pycountry

from pipeline_coverage.presentation import PRINCIPAL_TYPES

Kind = Literal["uuid", "text", "date", "money", "int", "bool", "enum", "currency", "rate"]

#: ISO 4217's currency codes (pycountry keeps the standard's list).
CURRENCY_CODES = tuple(sorted(currency.alpha_3 for currency in pycountry.currencies))


@dataclass(frozen=True)
class Column:
    """A CSV column: its type, whether it may be empty, and its allowed values."""

    name: str
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    #: A column added after the first release: a file may leave it out, and then the
    #: rows it loads keep their value of it (new rows get the table's default).
    optional: bool = False
    #: What an empty field stores (None: NULL).
    default: str | None = None


@dataclass(frozen=True)
class Reference:
    """A reference from a staged row to a row of ``table`` in the same tenant.

    ``columns`` map onto ``target``; ``when`` restricts the check to rows whose
    column has a value (sales targets point at a user or a group by principal_type).
    ``enforced`` says an immediate foreign key guards it: then the upsert itself
    rejects a bad row, and this check runs only afterwards, to say where. ``deferred``
    names a deferred foreign key that guards it: the loader makes that key immediate
    for its upsert (see :func:`checked_first`).
    """

    columns: tuple[str, ...]
    table: str
    target: tuple[str, ...]
    noun: str
    when: tuple[str, str] | None = None
    enforced: bool = True
    #: A row of the same file also satisfies it (a parent group loaded beside its
    #: children, in any order).
    or_staged: bool = False
    deferred: str | None = None


def checked_first(reference: Reference, *, citus: bool, held: frozenset[str] = frozenset()) -> bool:
    """Whether the loader checks ``reference`` before its upsert: a reference no
    foreign key guards during the upsert. A deferred key guards it on plain PostgreSQL,
    where the upsert makes it immediate (a check of its own first read the staged file
    and the referenced table once more, beside the key's own lookups), unless the load
    ``held`` that key deferred (a stage that moves with its deals); Citus does not pass
    ``SET CONSTRAINTS`` on to the shards, so there it is checked first."""
    return not reference.enforced and (
        reference.deferred is None or citus or reference.deferred in held
    )


@dataclass(frozen=True)
class TableSpec:
    """One import file and the table it loads."""

    file: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    references: tuple[Reference, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def present(self, names: list[str]) -> TableSpec:
        """This spec with only the columns a file has (optional ones may be absent), and
        the references of those columns."""
        return dataclasses.replace(
            self,
            columns=tuple(column for column in self.columns if column.name in names),
            references=tuple(r for r in self.references if set(r.columns) <= set(names)),
        )


def _id(required: bool = True) -> Column:
    return Column("id", "uuid", required=required)


_TENANT = Column("tenant_id", "uuid", required=True)
_TENANT_REF = Reference(("tenant_id",), "tenant", ("id",), "tenant")
_PIPELINE_REF = Reference(("pipeline_id",), "pipeline", ("id",), "pipeline")


#: deal's reference to its stage: deferred while a load moves stages (``load._load``).
STAGE_KEY = "fk_deal_stage"


def _deferred_ref(column: str, table: str, noun: str, key: str) -> Reference:
    return Reference((column,), table, ("id",), noun, enforced=False, deferred=key)


_STAGE_STATES = ("NOT_STARTED", "IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED")
_FORECAST_CATEGORIES = ("COMMIT", "BEST_CASE", "PIPELINE", "OMITTED")
_FORECAST_CATEGORY = Column(
    "forecast_category", "enum", choices=_FORECAST_CATEGORIES, optional=True
)

#: The import files, in the order they load (parents before children).
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "tenants.csv",
        "tenant",
        (
            _id(),
            Column("name", "text", required=True),
            Column("currency", "currency", optional=True, default="USD"),
            Column(
                "fiscal_year_start_month",
                "int",
                minimum=1,
                maximum=12,
                optional=True,
                default="1",
            ),
        ),
        ("id",),
    ),
    TableSpec(
        "exchange_rates.csv",
        "exchange_rate",
        (
            _TENANT,
            Column("currency", "currency", required=True),
            Column("valid_from", "date", required=True),
            Column("rate", "rate", required=True),
        ),
        ("tenant_id", "currency", "valid_from"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "users.csv",
        "crm_user",
        (
            _id(),
            _TENANT,
            Column("name", "text", required=True),
            Column("email", "text"),
            Column("is_active", "bool", required=True),
        ),
        ("tenant_id", "id"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "groups.csv",
        "crm_group",
        (
            _id(),
            _TENANT,
            Column("name", "text", required=True),
            Column("parent_group_id", "uuid", optional=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            # fk_crm_group_parent is deferred (a parent may come after its children).
            Reference(
                ("parent_group_id",),
                "crm_group",
                ("id",),
                "parent group",
                enforced=False,
                or_staged=True,
            ),
        ),
    ),
    TableSpec(
        "group_members.csv",
        "group_member",
        (
            _TENANT,
            Column("group_id", "uuid", required=True),
            Column("user_id", "uuid", required=True),
        ),
        ("tenant_id", "group_id", "user_id"),
        (
            _TENANT_REF,
            Reference(("group_id",), "crm_group", ("id",), "group"),
            Reference(("user_id",), "crm_user", ("id",), "user"),
        ),
    ),
    TableSpec(
        "pipelines.csv",
        "pipeline",
        (_id(), _TENANT, Column("name", "text", required=True)),
        ("tenant_id", "id"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "pipeline_stages.csv",
        "pipeline_stage",
        (
            _id(),
            _TENANT,
            Column("pipeline_id", "uuid", required=True),
            Column("name", "text", required=True),
            Column("stage_state", "enum", required=True, choices=_STAGE_STATES),
            Column("probability", "int", minimum=0, maximum=100),
            Column("position", "int"),
            _FORECAST_CATEGORY,
        ),
        ("tenant_id", "id"),
        (_TENANT_REF, _PIPELINE_REF),
    ),
    TableSpec(
        "deals.csv",
        "deal",
        (
            _id(),
            _TENANT,
            Column("pipeline_id", "uuid", required=True),
            Column("stage_id", "uuid", required=True),
            Column("name", "text", required=True),
            Column("amount", "money"),
            Column("expected_close_date", "date"),
            Column("close_date", "date"),
            Column("owned_by_user_id", "uuid"),
            Column("assigned_user_id", "uuid"),
            Column("owned_by_group_id", "uuid"),
            Column("assigned_group_id", "uuid"),
            _FORECAST_CATEGORY,
            Column("currency", "currency", optional=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            _PIPELINE_REF,
            # fk_deal_stage is deferred by the loader while a stage it updated may move
            # with its deals (checked_first).
            Reference(
                ("stage_id",),
                "pipeline_stage",
                ("id",),
                "stage",
                enforced=False,
                deferred=STAGE_KEY,
            ),
            Reference(
                ("pipeline_id", "stage_id"),
                "pipeline_stage",
                ("pipeline_id", "id"),
                "stage of that pipeline",
                enforced=False,
                deferred=STAGE_KEY,
            ),
            # Deferred keys (migration 0006: checked at commit), made immediate for the
            # upsert (checked_first).
            _deferred_ref("owned_by_user_id", "crm_user", "user", "fk_deal_owned_by_user"),
            _deferred_ref("assigned_user_id", "crm_user", "user", "fk_deal_assigned_user"),
            _deferred_ref("owned_by_group_id", "crm_group", "group", "fk_deal_owned_by_group"),
            _deferred_ref("assigned_group_id", "crm_group", "group", "fk_deal_assigned_group"),
        ),
    ),
    TableSpec(
        "sales_targets.csv",
        "sales_target",
        (
            _id(),
            _TENANT,
            Column("principal_type", "enum", required=True, choices=PRINCIPAL_TYPES),
            Column("principal_id", "uuid", required=True),
            Column("pipeline_id", "uuid"),
            Column("period_start", "date", required=True),
            Column("period_end", "date", required=True),
            Column("target_amount", "money", required=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            _PIPELINE_REF,
            # A principal is a user or a group: no foreign key can say which.
            Reference(
                ("principal_id",),
                "crm_user",
                ("id",),
                "user",
                when=("principal_type", "USER"),
                enforced=False,
            ),
            Reference(
                ("principal_id",),
                "crm_group",
                ("id",),
                "group",
                when=("principal_type", "GROUP"),
                enforced=False,
            ),
        ),
    ),
)

BY_FILE = {spec.file: spec for spec in TABLES}

#: The deferred foreign keys a load may make immediate for its upsert (checked_first).
DEFERRED_KEYS = frozenset(r.deferred for spec in TABLES for r in spec.references if r.deferred)


def columns(file: str, *, optional: bool = False) -> tuple[str, ...]:
    """The columns of an import file, e.g. ``columns("deals.csv")``: those every file
    has; with ``optional``, also those a file may leave out."""
    return tuple(column.name for column in BY_FILE[file].columns if optional or not column.optional)


def expected_columns(spec: TableSpec) -> str:
    """``id,name`` — and ``; optional: currency`` where a file may leave some out."""
    required = [column.name for column in spec.columns if not column.optional]
    optional = [column.name for column in spec.columns if column.optional]
    return ",".join(required) + (f"; optional: {','.join(optional)}" if optional else "")
