"""The import's ``multipart/form-data`` reader (``pipeline_coverage.web.uploads``): a
body read in chunks of any size, files saved under their own names made safe, and
every refusal with its status and message: an unknown, refused or repeated field, a
long value, overlong part headers, too many parts, a malformed body, another type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path

import anyio
import pytest

from pipeline_coverage.web.problems import ProblemError
from pipeline_coverage.web.uploads import (
    MAX_FIELD_BYTES,
    MAX_PART_HEADER_BYTES,
    MAX_PARTS,
    Form,
    boundary_of,
    read_form,
    safe_name,
)

BOUNDARY = "XyZ-upload-boundary"
FILES = {"deals": "deals.csv", "teams": "teams.csv"}
TEXTS = ("format", "dry_run")
REFUSED = {"tenant": "the tenant is the API key's"}


def part(name: str, content: bytes, filename: str | None = None, *extra: str) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = "".join(f"{line}\r\n" for line in (disposition, *extra))
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + content + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def read(data: bytes, folder: Path, size: int = 65536, texts: Collection[str] = TEXTS) -> Form:
    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), size):
            yield data[at : at + size]

    async def run() -> Form:
        return await read_form(
            chunks(), BOUNDARY.encode(), folder, files=FILES, texts=texts, refused=REFUSED
        )

    return anyio.run(run)


def refused(data: bytes, folder: Path, texts: Collection[str] = TEXTS) -> ProblemError:
    with pytest.raises(ProblemError) as raised:
        read(data, folder, texts=texts)
    return raised.value


CSV = b"Id,Name\r\n1,--XyZ-upload-boundar\r\n2,\r\n--not-it\r\n" * 50


@pytest.mark.parametrize("size", [1, 2, 7, 23, 64, 1000, 65536])
def test_a_body_in_chunks_of_any_size_reads_the_same(tmp_path: Path, size: int) -> None:
    data = body(
        part("deals", CSV, "exports/2026/deals 2026.csv", "Content-Type: text/csv"),
        part("format", b"salesforce"),
        part("teams", b"rep,team\r\n", ""),
        part("dry_run", "vrai ✓".encode()),
    )
    folder = tmp_path / str(size)
    folder.mkdir()
    form = read(data, folder, size)
    assert form.fields == {"format": "salesforce", "dry_run": "vrai ✓"}
    assert form.files == {
        "deals": folder / "deals" / "deals 2026.csv",
        "teams": folder / "teams" / "teams.csv",  # no file name: the field's own
    }
    assert form.files["deals"].read_bytes() == CSV
    assert form.files["teams"].read_bytes() == b"rep,team\r\n"


def test_a_file_keeps_its_own_name_made_safe_inside_its_folder(tmp_path: Path) -> None:
    # httpx and browsers escape a quote, CR and LF as %22, %0D, %0A.
    hostile = "a%22b%0D%0Ac/../../evil.csv"
    form = read(body(part("deals", b"x", hostile)), tmp_path)
    assert form.files["deals"] == tmp_path / "deals" / "evil.csv"
    dots = read(body(part("deals", b"x", "..")), tmp_path / "deals")
    assert dots.files["deals"] == tmp_path / "deals" / "deals" / "deals.csv"
    assert safe_name("%22..%22.csv", "x") == '"..".csv'
    assert safe_name("a\x00b\x1bc.csv", "x") == "abc.csv"
    assert safe_name("/", "x") == "x"
    assert safe_name("n" * 300 + ".csv", "x") == ("n" * 300 + ".csv")[-120:]


def test_fields_no_import_takes_are_422(tmp_path: Path) -> None:
    deals = part("deals", b"x", "d.csv")
    unknown = refused(body(deals, part("colour", b"red")), tmp_path)
    assert (unknown.status, unknown.detail) == (
        422, "colour: not a field of an import (its fields: deals, teams, format, dry_run)"
    )  # fmt: skip
    assert unknown.errors is not None
    tenant = refused(body(part("tenant", b"Globex")), tmp_path)
    assert (tenant.status, tenant.detail) == (422, "tenant: the tenant is the API key's")
    twice = refused(body(part("format", b"a"), part("format", b"b")), tmp_path)
    assert (twice.status, twice.detail) == (422, "format: given twice")
    long = refused(body(part("format", b"x" * (MAX_FIELD_BYTES + 1))), tmp_path)
    assert (long.status, long.detail) == (422, f"format: longer than {MAX_FIELD_BYTES} bytes")
    latin = refused(body(part("format", "é".encode("latin-1"))), tmp_path)
    assert (latin.status, latin.detail) == (422, "format: not UTF-8 text")
    assert read(body(part("format", b"x" * MAX_FIELD_BYTES)), tmp_path).fields


def test_overlong_part_headers_are_400_in_one_line_or_many_or_too_many_lines(
    tmp_path: Path,
) -> None:
    expected = (
        400,
        f"malformed multipart/form-data body: a part's headers are over "
        f"{MAX_PART_HEADER_BYTES} bytes",
    )
    one = refused(body(part("deals", b"x", "d.csv", "X-Long: " + "v" * MAX_PART_HEADER_BYTES)),
                  tmp_path)  # fmt: skip
    assert (one.status, one.detail) == expected
    lines = [f"X-{n}: " + "v" * (MAX_PART_HEADER_BYTES // 4) for n in range(5)]
    many = refused(body(part("deals", b"x", "d.csv", *lines)), tmp_path)
    assert (many.status, many.detail) == expected
    name = refused(body(part("deals", b"x", "d" * MAX_PART_HEADER_BYTES)), tmp_path)
    assert (name.status, name.detail) == expected
    # More header lines than any client sends: the parser's own limit, said as ours.
    nine = refused(body(part("deals", b"x", "d.csv", *(f"X-{n}: v" for n in range(8)))), tmp_path)
    assert (nine.status, nine.detail) == (
        400, "malformed multipart/form-data body: a part has more than 8 headers"
    )  # fmt: skip
    # Headers of an ordinary size, a few of them, are read.
    fine = [f"X-{n}: " + "v" * 100 for n in range(5)]
    assert read(body(part("deals", b"x", "d.csv", *fine)), tmp_path).files


def test_too_many_parts_is_400(tmp_path: Path) -> None:
    names = [f"t{n}" for n in range(MAX_PARTS + 1)]
    data = body(*(part(name, b"v") for name in names))
    many = refused(data, tmp_path, texts=names)
    assert (many.status, many.detail) == (
        400, f"malformed multipart/form-data body: more than {MAX_PARTS} parts"
    )  # fmt: skip
    assert len(read(body(*(part(name, b"v") for name in names[:-1])), tmp_path, texts=names)
               .fields) == MAX_PARTS  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (part("deals", b"x", "d.csv"), "the body ends before its closing boundary"),
        (b"", "the body ends before its closing boundary"),
        (f"--{BOUNDARY}\r\nX-Other: 1\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
         "a part has no 'Content-Disposition: form-data; name=...' header"),
        (f"--{BOUNDARY}\r\nContent-Disposition: attachment; name=\"deals\"\r\n\r\nx\r\n"
         f"--{BOUNDARY}--\r\n".encode(),
         "a part has no 'Content-Disposition: form-data; name=...' header"),
        (f"--{BOUNDARY}\r\nContent-Disposition form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
         .encode(), None),
        (b"--another-boundary\r\n\r\n", None),
    ],
)  # fmt: skip
def test_a_malformed_body_is_400(tmp_path: Path, data: bytes, reason: str | None) -> None:
    problem = refused(data, tmp_path)
    assert problem.status == 400
    assert problem.detail.startswith("malformed multipart/form-data body: "), problem.detail
    if reason is not None:
        assert problem.detail == f"malformed multipart/form-data body: {reason}"


def test_only_multipart_form_data_with_a_boundary_is_read() -> None:
    assert boundary_of(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY.encode()
    assert boundary_of('Multipart/Form-Data; charset=utf-8; boundary="a;b c"') == b"a;b c"
    for other in (None, "application/json", "multipart/mixed; boundary=x", "text/plain"):
        with pytest.raises(ProblemError) as raised:
            boundary_of(other)
        assert raised.value.status == 415
    for bad in ("multipart/form-data", "multipart/form-data; boundary=",
                "multipart/form-data; boundary=" + "b" * 71):  # fmt: skip
        with pytest.raises(ProblemError) as raised:
            boundary_of(bad)
        assert raised.value.status == 400
        assert raised.value.detail.endswith("the Content-Type has no valid boundary")
