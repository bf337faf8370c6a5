"""``POST /v1/imports`` over real HTTP: every preset and a mapping file import as the
CLI imports them, all or nothing; re-imports, full sync and its guard, dry runs, the
upload limit, the tenant always the key's, hostile file names, and the private
temporary folder left empty whatever happened; a large upload over a slow link is
read in full while a stalled one is still closed."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.config import WebSettings
from pipeline_coverage.web.app import create_app
from tests.conftest import serving
from tests.factory import Crm
from tests.integration.test_cli import cli

EXPORTS = Path(__file__).parent.parent / "data" / "exports"
MAVEN = Path(__file__).parent.parent.parent / "docs" / "examples" / "maven-crm.toml"
TABLES = ("crm_user", "crm_group", "group_member", "pipeline", "pipeline_stage", "deal",
          "sales_target")  # fmt: skip
Files = dict[str, tuple[str, bytes]]


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the server's uploads go to (the system's, for this test)."""
    import tempfile

    folder = tmp_path / "server-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def small_limits(db_url: str, uploads: Path) -> Iterator[str]:
    """A server with a 64 KiB upload limit and a 1 s read deadline."""
    settings = WebSettings(
        secret_key="test-secret-key", pool_size=4, max_import_bytes=64 * 1024, header_timeout=1.0
    )
    with serving(create_app(db_url, settings)) as url:
        yield url


def tenant_with_key(conn: psycopg.Connection[Any], name: str) -> tuple[uuid.UUID, str]:
    tenant = Crm(conn).tenant(name)
    conn.commit()
    _, key = create_api_key(conn, tenant, "import")
    return tenant, key


def export(name: str, as_name: str | None = None) -> tuple[str, bytes]:
    path = MAVEN if name == "maven-crm.toml" else EXPORTS / name
    return (as_name or path.name, path.read_bytes())


def post(base: str, key: str, files: Files, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/imports",
        headers={"Authorization": f"Bearer {key}"},
        files=files,
        data=fields,
        timeout=60,
    )


def counts(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> dict[str, int]:
    found = {}
    for table in TABLES:
        row = conn.execute(
            f"SELECT count(*) FROM dyno_crm.{table} WHERE tenant_id = %s",  # noqa: S608
            (tenant,),
        ).fetchone()
        assert row is not None
        found[table] = int(row[0])
    conn.commit()
    return found


def deal_amounts(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT d.name, d.amount, d.currency, s.name, s.stage_state, u.name"
        " FROM dyno_crm.deal AS d JOIN dyno_crm.pipeline_stage AS s"
        " ON s.tenant_id = d.tenant_id AND s.id = d.stage_id"
        " LEFT JOIN dyno_crm.crm_user AS u"
        " ON u.tenant_id = d.tenant_id AND u.id = d.owned_by_user_id"
        " WHERE d.tenant_id = %s ORDER BY d.name",
        (tenant,),
    ).fetchall()
    conn.commit()
    return rows


def tenant_id_named(conn: psycopg.Connection[Any], name: str) -> uuid.UUID:
    row = conn.execute("SELECT id FROM dyno_crm.tenant WHERE name = %s", (name,)).fetchone()
    conn.commit()
    assert row is not None
    return uuid.UUID(str(row[0]))


CASES = {
    "salesforce": ({"deals": "salesforce.csv", "teams": "teams.csv",
                    "targets": "targets-wide.csv"}, {}),
    "salesforce-report": ({"deals": "salesforce-report.csv", "teams": "teams.csv",
                           "targets": "targets-long.csv"}, {"format": "salesforce"}),
    "hubspot": ({"deals": "hubspot.csv", "targets": "targets-wide.csv"}, {"format": "hubspot"}),
    "pipedrive": ({"deals": "pipedrive.csv", "teams": "teams.csv"}, {}),
    "maven": ({"deals": "maven-pipeline.csv", "teams": "maven-teams.csv",
               "mapping": "maven-crm.toml"}, {}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_preset_imports_through_the_api_as_through_the_cli(
    case: str,
    capsys: Any,
    db_url: str,
    conn: psycopg.Connection[Any],
    live_server: str,
    uploads: Path,
) -> None:
    named, fields = CASES[case]
    args: list[str] = []
    for field, file in named.items():
        path = str(MAVEN if file == "maven-crm.toml" else EXPORTS / file)
        if field == "deals":
            args.append(path)
        elif field == "mapping":
            args += ["--format", path]
        else:
            args += [f"--{field}", path]
    if "format" in fields:
        args += ["--format", fields["format"]]
    result = cli(capsys, db_url, "import", "--tenant", "Cli Co", *args)
    assert result.code == 0, result
    by_cli = tenant_id_named(conn, "Cli Co")

    api_tenant, key = tenant_with_key(conn, "Api Co")
    files = {field: export(file) for field, file in named.items()}
    response = post(live_server, key, files, **fields)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["tenant_id"] == str(api_tenant)
    assert body["dry_run"] is False
    assert counts(conn, api_tenant) == counts(conn, by_cli)
    assert deal_amounts(conn, api_tenant) == deal_amounts(conn, by_cli)
    assert body["deals"]["new"] == counts(conn, api_tenant)["deal"]
    # The summary is the CLI's, but for the tenant's own lines.
    cli_lines = [line for line in result.out.splitlines() if not line.startswith("tenant ")]
    api_lines = [line for line in body["summary"] if not line.startswith("tenant ")]
    assert api_lines == cli_lines

    # Imported again: nothing changes.
    again = post(live_server, key, files, **fields)
    assert again.status_code == 201, again.text
    assert again.json()["deals"] == {**body["deals"], "new": 0,
                                     "unchanged": body["deals"]["new"]}  # fmt: skip
    assert again.json()["reps_created"] == again.json()["stages_created"] == []
    assert counts(conn, api_tenant) == counts(conn, by_cli)
    assert list(uploads.iterdir()) == []


def test_the_outcome_document_dry_run_and_full_sync_guard(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    files = {"deals": export("salesforce.csv"), "teams": export("teams.csv")}

    dry = post(live_server, key, files, dry_run="true")
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["summary"][0].startswith("dry run, nothing written: salesforce.csv")
    assert any("would be created" in line for line in dry.json()["summary"])
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)

    done = post(live_server, key, files)
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["deals"] == {"new": 4, "updated": 0, "unchanged": 0, "deleted": 0,
                             "skipped": 0, "skipped_by_reason": {}}  # fmt: skip
    assert body["format"].startswith("Salesforce")
    assert body["key_column"] == "Id"
    assert set(body["reps_created"]) >= {"Ana Silva", "Ben Ode"}
    assert set(body["teams_created"]) == {"East", "West", "Enterprise", "Strategic"}
    assert body["ignored_columns"] == ["LeadSource"]
    stage = next(s for s in body["stages_created"] if s["stage"] == "Closed Won")
    assert (stage["state"], stage["probability"]) == ("DONE_SUCCESS", 100)
    before = counts(conn, tenant)

    # A full sync of an export with one deal of four: refused, nothing changed.
    lines = (EXPORTS / "salesforce.csv").read_bytes().splitlines(keepends=True)
    short = {"deals": ("salesforce.csv", b"".join(lines[:2]))}
    refused = post(live_server, key, short, full="true")
    assert refused.status_code == 422, refused.text
    assert "max_delete 10%" in refused.json()["detail"]
    assert refused.json()["errors"][0]["field"] == "full"
    assert counts(conn, tenant) == before
    # Dry run of the same with a higher guard: would delete 3, deletes nothing.
    would = post(live_server, key, short, full="on", max_delete="80", dry_run="1")
    assert would.status_code == 200, would.text
    assert would.json()["deals"]["deleted"] == 3
    assert counts(conn, tenant) == before
    synced = post(live_server, key, short, full="true", max_delete="80")
    assert synced.status_code == 201, synced.text
    assert counts(conn, tenant)["deal"] == 1
    assert list(uploads.iterdir()) == []


def test_a_bad_file_is_422_with_every_problem_located_and_nothing_written(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    text = (EXPORTS / "salesforce.csv").read_text()
    broken = text.replace('"2026-03-31"', '"31/03/2026"').replace('"9000"', '"nine"')
    hostile = 'a"b\r\nc/../../evil.csv'
    response = post(live_server, key, {"deals": (hostile, broken.encode())}, format="salesforce")
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["title"] == "Unprocessable content"
    messages = [error["message"] for error in problem["errors"]]
    # The file's own name, its last segment, without the control characters.
    assert len(messages) == 2, messages
    assert all(m.startswith("evil.csv:") for m in messages), messages
    assert any(m.startswith("evil.csv:2: CloseDate:") for m in messages), messages
    assert {error["field"] for error in problem["errors"]} == {"deals"}
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)
    # A name that is only quotes and dots is shown as it is, inert, inside the folder.
    odd = post(live_server, key, {"deals": ('"..".csv', broken.encode())}, format="hubspot")
    assert odd.status_code == 422, odd.text
    assert odd.json()["errors"][0]["message"].startswith('"..".csv:')
    assert list(uploads.iterdir()) == []


def test_the_crms_history_comes_as_a_file_of_the_import(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    files = {"deals": export("salesforce-created.csv"),
             "history": export("opportunity-history.csv")}  # fmt: skip
    # A line in the future of the import is a problem of the history file: nothing kept.
    future = (EXPORTS / "opportunity-history.csv").read_text().replace("2026-01-03", "2999-01-03")
    refused = post(live_server, key, {**files, "history": ("history.csv", future.encode())})
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert [error["field"] for error in errors] == ["history"]
    assert errors[0]["message"].startswith("history.csv:9: CreatedDate: 2999-01-03 12:00:00 UTC:")
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)

    done = post(live_server, key, files)
    assert done.status_code == 201, done.text
    assert (
        "history: 7 lines, 3 deals; 2 lines of 1 opportunity not in the export skipped"
        " (first at line 6)"
    ) in done.json()["summary"]
    row = conn.execute(
        "SELECT count(*), count(DISTINCT deal_id) FROM dyno_crm.deal_version"
        " WHERE tenant_id = %s AND origin = 'crm' AND owner_assumed",
        (tenant,),
    ).fetchone()
    conn.commit()
    assert row == (8, 4)
    assert list(uploads.iterdir()) == []


def test_fields_no_import_takes_are_422(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    _, key = tenant_with_key(conn, "Acme")
    deals = {"deals": export("salesforce.csv")}
    cases: list[tuple[Files, dict[str, str], str]] = [
        (deals, {"format": "zoho"}, "format"),
        (deals, {"tenant": "Globex"}, "tenant"),
        (deals, {"currency": "EUR"}, "currency"),
        (deals, {"full": "maybe"}, "full"),
        (deals, {"max_delete": "101"}, "max_delete"),
        (deals, {"max_delete": "nan"}, "max_delete"),
        (deals, {"exported_at": "last tuesday"}, "exported_at"),
        (deals, {"exported_at": "2999-01-01"}, "exported_at"),
        ({"teams": export("teams.csv")}, {}, "deals"),
        ({**deals, "mapping": export("maven-crm.toml", "maven.txt")}, {}, "mapping"),
        ({**deals, "mapping": export("maven-crm.toml")}, {"format": "hubspot"}, "format"),
    ]
    for files, fields, field in cases:
        response = post(live_server, key, files, **fields)
        assert response.status_code == 422, (fields, response.text)
        assert response.json()["errors"][0]["field"] == field, response.text
    not_multipart = httpx.post(
        f"{live_server}/v1/imports", headers={"Authorization": f"Bearer {key}"},
        json={"deals": "x"}, timeout=30,
    )  # fmt: skip
    assert not_multipart.status_code == 415
    assert list(uploads.iterdir()) == []


def test_a_malformed_body_and_overlong_part_headers_are_400(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    content_type, body = multipart({"deals": export("hubspot.csv")})
    long_header = b"X-Note: " + b"n" * 9000 + b"\r\n"
    overlong = body.replace(
        b"Content-Type: text/csv\r\n", b"Content-Type: text/csv\r\n" + long_header
    )
    cases = [
        (overlong, "a part's headers are over 8192 bytes"),
        (body[: len(body) // 2], "the body ends before its closing boundary"),
        (body.replace(b"Content-Disposition", b"Content-Location"),
         "a part has no 'Content-Disposition: form-data; name=...' header"),
    ]  # fmt: skip
    for sent, reason in cases:
        response = httpx.post(
            f"{live_server}/v1/imports",
            headers={"Authorization": f"Bearer {key}", "Content-Type": content_type.decode()},
            content=sent,
            timeout=30,
        )
        assert response.status_code == 400, response.text
        assert response.json()["detail"] == f"malformed multipart/form-data body: {reason}"
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)
    assert list(uploads.iterdir()) == []


def test_the_tenant_is_always_the_keys(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    acme, _ = tenant_with_key(conn, "Acme")
    globex, globex_key = tenant_with_key(conn, "Globex")
    response = post(live_server, globex_key, {"deals": export("hubspot.csv")})
    assert response.status_code == 201, response.text
    assert response.json()["tenant_id"] == str(globex)
    assert counts(conn, acme) == dict.fromkeys(TABLES, 0)
    assert counts(conn, globex)["deal"] == 4
    # No key: 401 before any of the body is read.
    anonymous = httpx.post(
        f"{live_server}/v1/imports", files={"deals": export("hubspot.csv")}, timeout=30
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["connection"] == "close"
    # A tenant that shares its name (in another case) with another: refused, nothing kept.
    Crm(conn).tenant("ACME")
    conn.commit()
    _, acme_key = create_api_key(conn, acme, "second")
    clash = post(live_server, acme_key, {"deals": export("hubspot.csv")})
    assert clash.status_code == 409, clash.text
    assert counts(conn, acme) == dict.fromkeys(TABLES, 0)
    assert list(uploads.iterdir()) == []


def test_the_dashboard_cookie_imports_from_its_own_origin_only(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    with httpx.Client(base_url=live_server, timeout=30) as browser:
        signed_in = browser.post("/session", json={"api_key": key})
        assert signed_in.status_code == 204
        files = {"deals": export("hubspot.csv")}
        other = browser.post("/v1/imports", files=files, headers={"Origin": "http://evil.test"})
        assert other.status_code == 403
        assert counts(conn, tenant)["deal"] == 0
        own = browser.post("/v1/imports", files=files, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 201, own.text
    assert counts(conn, tenant)["deal"] == 4


def raw_request(base: str, head: bytes, body_parts: Iterator[bytes], pause: float) -> bytes:
    """Send a request's head, then its body in parts with a pause between them; the
    answer (what came before the server closed or answered)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
                time.sleep(pause)
        except OSError:
            pass
        sock.settimeout(10)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def multipart(files: Files, boundary: str = "XyZ-upload-boundary") -> tuple[bytes, bytes]:
    body = b""
    for field, (name, content) in files.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{name}"\r\nContent-Type: text/csv\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}".encode(), body


def big_export(size: int) -> bytes:
    """A Salesforce export of about ``size`` bytes (distinct deals)."""
    header = (EXPORTS / "salesforce.csv").read_bytes().splitlines(keepends=True)[0]
    lines = [header]
    total, n = len(header), 0
    while total < size:
        line = (f'"006{n:015d}","Deal {n} {"x" * 60}","Ana Silva","Prospecting","false",'
                f'"false","{n % 9000 + 100}.00","USD","2026-03-31","Pipeline","10",'
                f'"New Business","Web"\n').encode()  # fmt: skip
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)


def head(key: str, content_type: bytes, length: int | None) -> bytes:
    sized = f"Content-Length: {length}\r\n".encode() if length is not None else b""
    return (
        b"POST /v1/imports HTTP/1.1\r\nHost: test\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: " + content_type + b"\r\n" + sized + b"\r\n"
    )  # fmt: skip


@pytest.mark.slow
def test_a_large_upload_over_a_slow_link_is_read_and_a_stalled_one_closed(
    conn: psycopg.Connection[Any], db_url: str, uploads: Path
) -> None:
    """The read deadline is 1 s here: a 5 MB upload takes about 4 s and succeeds (the
    body keeps coming); a body that stops is closed about 1 s later; one that trickles
    below the minimum rate is closed too."""
    tenant, key = tenant_with_key(conn, "Acme")
    content_type, body = multipart({"deals": ("big.csv", big_export(5_000_000))})
    settings = WebSettings(secret_key="test-secret-key", pool_size=4, header_timeout=1.0)
    with serving(create_app(db_url, settings)) as base:
        parts = (body[i : i + 250_000] for i in range(0, len(body), 250_000))
        started = time.monotonic()
        answer = raw_request(base, head(key, content_type, len(body)), parts, 0.2)
        assert time.monotonic() - started > 3
        assert answer.startswith(b"HTTP/1.1 201"), answer[:400]
        assert counts(conn, tenant)["deal"] > 20_000

        # Half a body, then nothing: closed without an answer about 1 s later.
        started = time.monotonic()
        stalled = raw_request(base, head(key, content_type, len(body)), iter([body[:100_000]]), 0)
        assert stalled == b""
        assert time.monotonic() - started < 6
        # A trickle: a few bytes at a time, well under the minimum rate.
        trickle = (body[i : i + 20] for i in range(0, 2000, 20))
        started = time.monotonic()
        slow = raw_request(base, head(key, content_type, len(body)), trickle, 0.1)
        assert slow == b""
        assert time.monotonic() - started < 8
    assert list(uploads.iterdir()) == []


@pytest.mark.slow
def test_past_the_upload_limit_is_413_and_nothing_written(
    conn: psycopg.Connection[Any], small_limits: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    content_type, body = multipart({"deals": ("big.csv", big_export(200_000))})
    # Declared too large: refused before a byte of the body is read.
    declared = raw_request(small_limits, head(key, content_type, len(body)), iter([]), 0)
    assert declared.startswith(b"HTTP/1.1 413"), declared[:300]
    # Streamed (chunked, no length): refused once past the limit, the connection closed.
    chunked = (f"{len(body[i : i + 16384]):x}\r\n".encode() + body[i : i + 16384] + b"\r\n"
               for i in range(0, len(body), 16384))  # fmt: skip
    streamed_head = head(key, content_type, None).replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    streamed = raw_request(small_limits, streamed_head, chunked, 0.01)
    assert streamed.startswith(b"HTTP/1.1 413"), streamed[:300]
    assert b"connection: close" in streamed.lower()
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)
    assert list(uploads.iterdir()) == []


@pytest.mark.slow
def test_a_client_gone_midway_leaves_nothing(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    content_type, body = multipart({"deals": ("big.csv", big_export(1_000_000))})
    host, port = live_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head(key, content_type, len(body)) + body[:500_000])
        deadline = time.monotonic() + 10
        while not any(uploads.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(uploads.iterdir()), "the upload never began"
    deadline = time.monotonic() + 10
    while any(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(uploads.iterdir()) == []
    assert counts(conn, tenant) == dict.fromkeys(TABLES, 0)


def test_exported_at_dates_the_export_and_an_older_one_after_it_is_422(
    conn: psycopg.Connection[Any], live_server: str, uploads: Path
) -> None:
    tenant, key = tenant_with_key(conn, "Acme")
    deals = {"deals": export("salesforce.csv")}
    assert post(live_server, key, deals, exported_at="2026-02-10T09:00:00Z").status_code == 201
    stored = conn.execute(
        "SELECT recorded_until FROM dyno_crm.tenant WHERE id = %s", (tenant,)
    ).fetchone()
    conn.commit()
    assert stored is not None
    assert stored[0] == dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)
    older = post(live_server, key, deals, exported_at="2026-01-01")
    assert older.status_code == 422, older.text
    assert older.json()["errors"][0]["field"] == "exported_at"
    assert "oldest first" in older.json()["detail"]
