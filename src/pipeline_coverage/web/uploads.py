"""A ``multipart/form-data`` body (RFC 7578) read as it streams in.

Each file part goes straight to a file of its own in a folder the caller owns, under
the file's own name made safe (its last path segment, without control characters),
in a sub-folder named after the form field: two parts cannot collide, and no name
can reach outside the folder. Other fields are short text, kept in memory. Nothing is
held in memory but one chunk and a boundary's length, whatever the files' sizes.

The body's total size is limited by :class:`pipeline_coverage.web.limits.BodyLimit`;
this reader refuses what no import needs: an unknown field, a field given twice, a
long field value, overlong part headers, too many parts.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipeline_coverage.web.problems import ProblemError, field_problem

#: The longest text field value (a date format, a sheet's name, a number).
MAX_FIELD_BYTES = 1024
#: The longest header block of one part.
MAX_PART_HEADER_BYTES = 8 * 1024
#: The most parts a form may have (a form of every field has ten).
MAX_PARTS = 32
#: The longest file name kept (characters; the end is kept, with its suffix).
MAX_NAME = 120
_PARAMETER = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


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


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 415 for another type."""
    media, _, parameters = (content_type or "").partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise ProblemError(
            415, "send the import as multipart/form-data (curl -F deals=@export.csv)"
        )
    found = dict(_parameters(";" + parameters))
    boundary = found.get("boundary", "")
    if not 0 < len(boundary) <= 70 or not boundary.isascii():
        raise _bad_body("the Content-Type has no valid boundary")
    return boundary.encode("ascii")


def _parameters(text: str) -> list[tuple[str, str]]:
    """``; name=value`` pairs of a header (values unquoted, backslash escapes undone)."""
    pairs = []
    for match in _PARAMETER.finditer(text):
        name, value = match.group(1).lower(), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs.append((name, value))
    return pairs


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


def _disposition(headers: bytes) -> tuple[str, str | None]:
    """The field name and file name (None: a text field) of a part's headers."""
    try:
        text = headers.decode("utf-8")
    except UnicodeDecodeError:
        text = headers.decode("latin-1")
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or name.strip().lower() != "content-disposition":
            continue
        kind, _, rest = value.partition(";")
        if kind.strip().lower() != "form-data":
            break
        found = dict(_parameters(";" + rest))
        if "name" not in found:
            break
        filename = found.get("filename")
        extended = found.get("filename*")
        if extended:  # RFC 5987: charset'language'percent-encoded
            charset, _, encoded = extended.partition("'")
            encoded = encoded.partition("'")[2]
            with contextlib.suppress(LookupError):
                filename = urllib.parse.unquote(encoded, encoding=charset or "utf-8")
        return found["name"], filename
    raise _bad_body("a part has no 'Content-Disposition: form-data; name=...' header")


class _Part:
    """The part being read: a file being written, or a text field being collected."""

    def __init__(self, name: str, handle: BinaryIO | None) -> None:
        self.name = name
        self.handle = handle
        self.text = bytearray()

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.handle is not None:
            self.handle.write(data)
            return
        self.text += data
        if len(self.text) > MAX_FIELD_BYTES:
            raise _unprocessable(self.name, f"longer than {MAX_FIELD_BYTES} bytes")


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
    delimiter = b"\r\n--" + boundary
    form = Form()
    seen: set[str] = set()
    buffer = bytearray(b"\r\n")  # the first delimiter has no line break before it
    state = "preamble"
    part: _Part | None = None
    parts = 0
    try:
        async for chunk in chunks:
            buffer += chunk
            while True:
                if state == "preamble":
                    at = buffer.find(delimiter)
                    if at < 0:
                        del buffer[: max(0, len(buffer) - len(delimiter))]
                        break
                    del buffer[: at + len(delimiter)]
                    state = "delimiter"
                elif state == "delimiter":
                    if len(buffer) < 2:
                        break
                    if buffer[:2] == b"--":
                        state = "done"
                        buffer.clear()
                        break
                    end = buffer.find(b"\r\n")
                    if end < 0:
                        if len(buffer) > 256:
                            raise _bad_body("text after a boundary")
                        break
                    if buffer[:end].strip(b" \t"):
                        raise _bad_body("text after a boundary")
                    del buffer[: end + 2]
                    state = "headers"
                elif state == "headers":
                    if buffer.startswith(b"\r\n"):
                        raise _bad_body("a part has no headers")
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > MAX_PART_HEADER_BYTES:
                            raise _bad_body(
                                f"a part's headers are over {MAX_PART_HEADER_BYTES} bytes"
                            )
                        break
                    name, filename = _disposition(bytes(buffer[:end]))
                    del buffer[: end + 4]
                    parts += 1
                    if parts > MAX_PARTS:
                        raise _bad_body(f"more than {MAX_PARTS} parts")
                    part = _begin(name, filename, folder, form, seen, files, texts, refused)
                    state = "body"
                elif state == "body":
                    assert part is not None
                    at = buffer.find(delimiter)
                    if at < 0:
                        keep = len(delimiter) - 1
                        if len(buffer) > keep:
                            part.write(bytes(buffer[: len(buffer) - keep]))
                            del buffer[: len(buffer) - keep]
                        break
                    part.write(bytes(buffer[:at]))
                    del buffer[: at + len(delimiter)]
                    _end(part, form)
                    part = None
                    state = "delimiter"
                else:  # done: an epilogue is ignored
                    buffer.clear()
                    break
    finally:
        if part is not None and part.handle is not None:
            part.handle.close()
    if state != "done":
        raise _bad_body("the body ends before its closing boundary")
    return form


def _begin(
    name: str,
    filename: str | None,
    folder: Path,
    form: Form,
    seen: set[str],
    files: Mapping[str, str],
    texts: Collection[str],
    refused: Mapping[str, str] | None,
) -> _Part:
    shown = safe_name(name, "?")[:40]
    if refused and name in refused:
        raise _unprocessable(shown, refused[name])
    if name not in files and name not in texts:
        known = ", ".join([*files, *texts])
        raise _unprocessable(shown, f"not a field of an import (its fields: {known})")
    if name in seen:
        raise _unprocessable(shown, "given twice")
    seen.add(name)
    if name in texts:
        return _Part(name, None)
    own = safe_name(filename or "", files[name])
    home = folder / name
    home.mkdir(mode=0o700)
    path = home / own
    # The name is one segment without separators: it cannot leave its folder.
    if path.parent != home or path.resolve().parent != home.resolve():
        raise _unprocessable(name, "not a usable file name")
    form.files[name] = path
    return _Part(name, path.open("xb"))


def _end(part: _Part, form: Form) -> None:
    if part.handle is not None:
        part.handle.close()
        return
    try:
        form.fields[part.name] = part.text.decode("utf-8")
    except UnicodeDecodeError:
        raise _unprocessable(part.name, "not UTF-8 text") from None
