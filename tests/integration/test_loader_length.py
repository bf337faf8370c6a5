"""How long a record may be (docs/import-format.md, "Record length").

A record of MAX_RECORD_BYTES loads; one byte more is refused at its line, with nothing
written, as soon as the loader has read that far: a file that is one endless line is
not read to its end (it took minutes, the unfinished line copied again for every
chunk). A large file of ordinary records, quoted ones spanning lines and chunks
among them, still loads whole.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.importing.records import CHUNK, MAX_RECORD_BYTES
from tests.integration.test_cli import PREFIX, assert_one_error_line, cli
from tests.integration.test_loader import dump, fetch, load, reject

TOO_LONG = (
    f"a record longer than {MAX_RECORD_BYTES:,} bytes ({MAX_RECORD_BYTES >> 20} MiB),"
    " the most one record may hold"
)


def record(length: int, kind: str) -> tuple[str, bytes]:
    """A tenants.csv record of exactly ``length`` bytes (without its line break): its
    id and bytes. ``kind``: a plain name, a quoted one with a comma, or a quoted one
    spanning lines."""
    tenant = str(uuid.uuid4())
    start = f"{tenant},".encode()
    if kind == "plain":
        return tenant, start + b"n" * (length - len(start))
    body = length - len(start) - 2  # the two quotes
    middle = b"\n" * 3 if kind == "lines" else b", "
    name = b"n" * (body // 2) + middle + b"n" * (body - body // 2 - len(middle))
    return tenant, start + b'"' + name + b'"'


def tenants_file(data_dir: Path, *records: bytes) -> Path:
    first, last = f"{uuid.uuid4()},First".encode(), f"{uuid.uuid4()},Last".encode()
    path = data_dir / "tenants.csv"
    path.write_bytes(b"\n".join([b"id,name", first, *records, last]) + b"\n")
    return path


KINDS = pytest.mark.parametrize("kind", ["plain", "quoted", "lines"])


@KINDS
def test_a_record_of_the_most_bytes_loads(
    kind: str, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant, content = record(MAX_RECORD_BYTES, kind)
    assert len(content) == MAX_RECORD_BYTES
    tenants_file(data_dir, content)

    loads = load(conn, data_dir)

    assert [(x.rows, x.inserted) for x in loads] == [(3, 3)]
    [(length,)] = fetch(
        db_url, "SELECT octet_length(name) FROM dyno_crm.tenant WHERE id = %s", [tenant]
    )
    assert length == MAX_RECORD_BYTES - len(tenant) - 1 - (0 if kind == "plain" else 2)


@KINDS
def test_a_record_one_byte_longer_is_refused_at_its_line(
    kind: str, conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    _, content = record(MAX_RECORD_BYTES + 1, kind)
    tenants_file(data_dir, content)
    before = dump(db_url)

    assert reject(conn, data_dir).problems == [f"tenants.csv:3: {TOO_LONG}"]
    assert dump(db_url) == before


def test_an_endless_line_is_refused_without_reading_it_to_its_end(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """64 MiB in one line, quoted: refused after reading little more than a record."""
    path = tenants_file(data_dir, f'{uuid.uuid4()},"'.encode() + b"n" * (64 << 20))
    sent: list[int] = []
    before = dump(db_url)

    with pytest.raises(LoadError) as caught:
        load_directory(conn, data_dir, progress=lambda _file, done, _size: sent.append(done))

    assert caught.value.problems == [f"tenants.csv:3: {TOO_LONG}"]
    assert max(sent, default=0) <= MAX_RECORD_BYTES + CHUNK < path.stat().st_size
    assert dump(db_url) == before


def test_the_command_prints_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenants_file(data_dir, record(MAX_RECORD_BYTES + 1, "plain")[1], b"x" * (8 << 20))

    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir)))

    assert line == f"{PREFIX} tenants.csv:3: {TOO_LONG}"
    assert fetch(db_url, "SELECT count(*) FROM dyno_crm.tenant") == [(0,)]


def test_a_large_file_of_ordinary_records_loads_whole(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """Several chunks of records, some quoted, some spanning lines (and chunks), and one
    long record among them."""
    names = []
    for n in range(60_000):
        if n % 7 == 0:
            names.append(f'"Tenant {n}, quoted ""name"""'.encode())
        elif n % 11 == 0:
            names.append(f'"Tenant {n}\nover two lines"'.encode())
        else:
            names.append(f"Tenant {n}".encode())
    names[30_000] = b'"' + b"long\n" * ((MAX_RECORD_BYTES - 100) // 5) + b'"'
    ids = [str(uuid.uuid4()) for _ in names]
    lines = [f"{tenant},".encode() + name for tenant, name in zip(ids, names, strict=True)]
    path = data_dir / "tenants.csv"
    path.write_bytes(b"\n".join([b"id,name", *lines]) + b"\n")
    assert path.stat().st_size > 4 * CHUNK

    assert [(x.rows, x.inserted) for x in load(conn, data_dir)] == [(60_000, 60_000)]
    stored = dict(fetch(db_url, "SELECT id::text, name FROM dyno_crm.tenant"))
    assert stored[ids[7]] == 'Tenant 7, quoted "name"'
    assert stored[ids[11]] == "Tenant 11\nover two lines"
    assert stored[ids[59_999]] == "Tenant 59999"
    assert len(stored[ids[30_000]]) == (MAX_RECORD_BYTES - 100) // 5 * 5
