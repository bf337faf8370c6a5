"""The loader accepts exactly the UUIDs PostgreSQL accepts, on every server version, and
cuts echoed values alike in SQL and in Python."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing import checks
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.presentation import SHOWN_CHARS

SAMPLES = [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
    "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
    "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
    "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
    "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
    " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "1234",
]


def postgres_accepts(conn: psycopg.Connection[Any], text: str) -> bool:
    try:
        with conn.transaction():
            conn.execute("SELECT %s::text::uuid", (text,))
    except psycopg.errors.InvalidTextRepresentation:
        return False
    return True


@pytest.mark.parametrize("text", SAMPLES)
def test_uuid_check_agrees_with_postgresql(conn: psycopg.Connection[Any], text: str) -> None:
    """The PostgreSQL 15 regex and PostgreSQL's own uuid input say the same."""
    assert (re.fullmatch(checks.UUID_RE.strip("^$"), text) is not None) == postgres_accepts(
        conn, text
    )


def test_an_unreadable_or_malformed_header_is_a_located_rejection(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    (folder / "users.csv").mkdir(parents=True)  # a folder where a file should be
    with pytest.raises(LoadError, match=r"users\.csv: cannot read"):
        load_directory(conn, folder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "tenants.csv").write_text('"id,name\n' + "x" * 200_000 + "\n")
    with pytest.raises(LoadError, match=r"tenants\.csv:1: "):
        load_directory(conn, other)
    assert conn.execute("SELECT count(*) FROM dyno_crm.tenant").fetchone() == (0,)


@pytest.mark.parametrize("length", [0, 1, 59, 60, 61, 1 << 20])
def test_values_are_cut_alike_in_sql_and_in_python(
    conn: psycopg.Connection[Any], length: int
) -> None:
    """One rule for every echoed value, whether a problem is worded in SQL or Python."""
    value = ("ü'x" * length)[:length]  # characters, not bytes; a quote to escape
    shown = conn.execute(
        sql.SQL("SELECT {}, {}").format(
            checks.shorten_sql(sql.Literal(value), quote=False),
            checks.shorten_sql(sql.Literal(value)),
        )
    ).fetchone()

    assert shown is not None
    cut = value if length <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"
    note = f" ({length} characters)" if length > SHOWN_CHARS else ""
    assert shown[0] == checks.shorten(value) == cut + note
    assert shown[1] == "'" + cut.replace("'", "''") + "'" + note
