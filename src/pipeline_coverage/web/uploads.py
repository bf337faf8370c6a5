"""A ``multipart/form-data`` body (RFC 7578) read as it streams in.

The body's chunks are fed, as they arrive, to python-multipart's push parser (the one
Starlette uses); this module keeps only the policy around it. Each file part goes
straight to a file of its own in a folder the caller owns, under the file's own name
made safe (its last path segment, without control characters), in a sub-folder named
after the form field: two parts cannot collide, and no name can reach outside the
folder. Other fields are short text, kept in memory. Nothing is held in memory but one
chunk and a part's headers, whatever the files' sizes.

The body's total size is limited by :class:`pipeline_coverage.web.limits.BodyLimit`;
this reader refuses what no import needs: an unknown field, a field given twice, a
long field value, overlong part headers, too many parts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from pipeline_coverage.web.problems import ProblemError, field_problem

#: The longest text field value (a date format, a sheet's name, a number).
MAX_FIELD_BYTES = 1024
#: The longest header block of one part.
MAX_PART_HEADER_BYTES = 8 * 1024
#: The most parts a form may have (a form of every field has ten).
MAX_PARTS = 32
#: The longest file name kept (characters; the end is kept, with its suffix).
MAX_NAME = 120
#: The most header lines of one part (the parser's own default; a browser sends two).
MAX_PART_HEADERS = 8


@dataclass
class Form:
    """A form as read: text fields, and for each file field its saved path (the file's
    own name, made safe, is the path's name)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _unprocessable(name: str, reason: str) -> ProblemError:
    message = f"{name}: {reason}"
    return ProblemError(422, message, [field_problem(message)])


def _bad_body(reason: str) -> ProblemError:
    return ProblemError(400, f"malformed multipart/form-data body: {reason}")


_OVERLONG_HEADERS = f"a part's headers are over {MAX_PART_HEADER_BYTES} bytes"


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 415 for another type."""
    media, options = parse_options_header((content_type or "").encode("latin-1", "replace"))
    if media != b"multipart/form-data":
        raise ProblemError(
            415, "send the import as multipart/form-data (curl -F deals=@export.csv)"
        )
    boundary = options.get(b"boundary", b"")
    if not 0 < len(boundary) <= 70 or not boundary.isascii():
        raise _bad_body("the Content-Type has no valid boundary")
    return boundary


#: What browsers escape in a form's file names (the HTML standard: ``"``, CR, LF).
_BROWSER_ESCAPES = re.compile(r"%(22|0D|0A)", re.IGNORECASE)


def safe_name(given: str, fallback: str) -> str:
    """A file's own name as it may be kept and shown: its last path segment (either
    slash), without control characters (CR, LF, NUL, ...); ``fallback`` when nothing
    usable is left (``..``, empty). A browser's ``%22`` is a quote again."""
    given = _BROWSER_ESCAPES.sub(lambda found: chr(int(found.group(1), 16)), given)
    name = given.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    if name in ("", ".", ".."):
        return fallback
    return name[-MAX_NAME:]


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _disposition(value: bytes | None) -> tuple[str, str | None]:
    """The field name and file name (None: a text field) of a part's
    ``Content-Disposition`` (``filename*`` is ignored, as RFC 7578 says)."""
    kind, options = parse_options_header(value)
    if value is None or kind != b"form-data" or b"name" not in options:
        raise _bad_body("a part has no 'Content-Disposition: form-data; name=...' header")
    filename = options.get(b"filename")
    return _text(options[b"name"]), None if filename is None else _text(filename)


#: The parser's own refusals, said as this reader says them.
_PARSER_REASONS = {
    "Maximum header size exceeded": _OVERLONG_HEADERS,
    "Maximum header count exceeded": f"a part has more than {MAX_PART_HEADERS} headers",
}


class _Reader:
    """The parser's callbacks, and the policy: a part's headers collected (at most
    ``MAX_PART_HEADER_BYTES``), then its data written to its own file, or collected
    (at most ``MAX_FIELD_BYTES``) for a text field."""

    def __init__(
        self, folder: Path, files: Mapping[str, str], texts: Collection[str],
        refused: Mapping[str, str],
    ) -> None:  # fmt: skip
        self.folder, self.files, self.texts, self.refused = folder, files, texts, refused
        self.form = Form()
        self.parts = self.header_bytes = 0
        self.header = (bytearray(), bytearray())  # the header line being read: name, value
        self.disposition: bytes | None = None
        self.name = ""
        self.handle: BinaryIO | None = None
        self.text = bytearray()
        self.ended = False

    def parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self.part_begin,
                "on_header_field": lambda data, start, end: self.collect(0, data[start:end]),
                "on_header_value": lambda data, start, end: self.collect(1, data[start:end]),
                "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished,
                "on_part_data": lambda data, start, end: self.data(memoryview(data)[start:end]),
                "on_part_end": self.part_end,
                "on_end": self.end,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    def part_begin(self) -> None:
        self.header_bytes, self.disposition = 0, None

    def collect(self, which: int, data: bytes) -> None:
        self.header_bytes += len(data)
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise _bad_body(_OVERLONG_HEADERS)
        self.header[which].extend(data)

    def header_end(self) -> None:
        name, value = self.header
        if name.lower() == b"content-disposition" and self.disposition is None:
            self.disposition = bytes(value)
        name.clear()
        value.clear()

    def headers_finished(self) -> None:
        name, filename = _disposition(self.disposition)
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _bad_body(f"more than {MAX_PARTS} parts")
        shown = safe_name(name, "?")[:40]
        if name in self.refused:
            raise _unprocessable(shown, self.refused[name])
        if name not in self.files and name not in self.texts:
            known = ", ".join([*self.files, *self.texts])
            raise _unprocessable(shown, f"not a field of an import (its fields: {known})")
        if name in self.form.fields or name in self.form.files:
            raise _unprocessable(shown, "given twice")
        self.name = name
        if name in self.texts:
            self.text.clear()
            return
        home = self.folder / name
        home.mkdir(mode=0o700)
        path = home / safe_name(filename or "", self.files[name])
        # The name is one segment without separators: it cannot leave its folder.
        if path.parent != home or path.resolve().parent != home.resolve():
            raise _unprocessable(name, "not a usable file name")
        self.form.files[name] = path
        self.handle = path.open("xb")

    def data(self, data: memoryview) -> None:
        if self.handle is not None:
            self.handle.write(data)
            return
        self.text += data
        if len(self.text) > MAX_FIELD_BYTES:
            raise _unprocessable(self.name, f"longer than {MAX_FIELD_BYTES} bytes")

    def part_end(self) -> None:
        if self.handle is not None:
            self.close()
            return
        try:
            self.form.fields[self.name] = self.text.decode("utf-8")
        except UnicodeDecodeError:
            raise _unprocessable(self.name, "not UTF-8 text") from None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


async def read_form(
    chunks: AsyncIterator[bytes],
    boundary: bytes,
    folder: Path,
    *,
    files: Mapping[str, str],
    texts: Collection[str],
    refused: Mapping[str, str] | None = None,
) -> Form:
    """Read a multipart body: the parts named in ``files`` are saved under ``folder``
    (a part without a file name under the name ``files`` gives it), those in ``texts``
    kept as text; a part named in ``refused`` is 422 with its
    reason, any other name 422 too."""
    reader = _Reader(folder, files, texts, refused or {})
    parser = reader.parser(boundary)
    try:
        async for chunk in chunks:
            parser.write(chunk)
    except MultipartParseError as exc:
        raise _bad_body(_PARSER_REASONS.get(str(exc), str(exc))) from None
    finally:
        reader.close()
    if not reader.ended:
        raise _bad_body("the body ends before its closing boundary")
    return reader.form
