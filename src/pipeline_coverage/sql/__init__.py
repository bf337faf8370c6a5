"""The package's SQL: named queries in ``queries/*.sql`` and migration scripts.

A query file holds one or more queries, each introduced by a ``-- name: NAME`` line
followed by a one-line ``--`` purpose. Files are read once, from inside the package,
so nothing depends on the working directory.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_named_queries(text: str, source: str) -> dict[str, str]:
    """Split a query file into its ``-- name: NAME`` sections."""
    marks = list(_NAME_LINE.finditer(text))
    if not marks:
        raise ValueError(f"{source}: no '-- name:' line")
    queries: dict[str, str] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = mark.group("name")
        if name in queries:
            raise ValueError(f"{source}: query {name!r} defined twice")
        queries[name] = text[mark.end() : end].strip() + "\n"
    return queries


@functools.cache
def queries(file: str) -> dict[str, str]:
    """All named queries of ``queries/<file>.sql``, their fragments included (:func:`expand`)."""
    resource = resources.files(__package__).joinpath("queries", f"{file}.sql")
    found = parse_named_queries(resource.read_text(encoding="utf-8"), f"{file}.sql")
    return found if file == "fragments" else {name: expand(text) for name, text in found.items()}


_FRAGMENT = re.compile(r"/\*\s*fragment:\s*(?P<name>[a-z_][a-z0-9_]*)\s*\*/")


def expand(text: str) -> str:
    """``text`` with each ``/* fragment: NAME */`` replaced by ``(`` the fragment
    ``NAME`` of ``queries/fragments.sql`` ``)``: SQL that several queries read alike,
    written once (a view could not name the tenant inside, which its reads need)."""
    fragments = queries("fragments")

    def included(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in fragments:
            raise ValueError(f"no fragment {name!r} in fragments.sql")
        return "(\n" + expand(fragments[name].rstrip().removesuffix(";")) + "\n)"

    return _FRAGMENT.sub(included, text)


def query(file: str, name: str) -> str:
    """One named query of ``queries/<file>.sql``."""
    return queries(file)[name]


@functools.cache
def specialized_query(file: str, name: str, **flags: bool) -> str:
    """``query(file, name)`` specialized for ``flags`` (see :func:`specialize`), made
    once per combination: a run's statement is on the single report's hot path."""
    return specialize(query(file, name), **flags)


_IF_LINE = re.compile(r"^\s*--\s*if\s+(?P<flag>[a-z_]+)\s*$")
_END_LINE = re.compile(r"^\s*--\s*end if\s*$")
_UNLESS_LINE = re.compile(r"^(?P<indent>\s*)--\s*unless\s+(?P<flag>[a-z_]+):\s?(?P<text>.*)$")


def specialize(text: str, **flags: bool) -> str:
    """A query for one combination of its options. As written, the query is valid for
    every run; the lines between ``-- if FLAG`` and ``-- end if`` are only for runs
    with FLAG (they are dropped when it is false), and a line ``-- unless FLAG: SQL``
    stands for SQL when FLAG is false. A specialized query gives the same result as
    the whole one: it leaves out what the planner would fold away, so it plans faster.
    """
    kept: list[str] = []
    open_flag: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if match := _IF_LINE.match(line):
            if open_flag is not None:
                raise ValueError(f"line {number}: '-- if' inside '-- if {open_flag}'")
            open_flag = _flag(match["flag"], flags, number)
            continue
        if _END_LINE.match(line):
            if open_flag is None:
                raise ValueError(f"line {number}: '-- end if' without '-- if'")
            open_flag = None
            continue
        if open_flag is not None and not flags[open_flag]:
            continue
        if (match := _UNLESS_LINE.match(line)) and not flags[_flag(match["flag"], flags, number)]:
            line = match["indent"] + match["text"]
        kept.append(line)
    if open_flag is not None:
        raise ValueError(f"'-- if {open_flag}' without '-- end if'")
    return "\n".join(kept) + "\n"


def _flag(name: str, flags: dict[str, bool], number: int) -> str:
    if name not in flags:
        raise ValueError(f"line {number}: no value for flag {name!r}")
    return name


def migration(filename: str) -> str:
    """The text of one migration script in ``migrations/``."""
    return resources.files(__package__).joinpath("migrations", filename).read_text("utf-8")


def statements(script: str) -> list[str]:
    """A migration script's statements, one each: a statement ends with a line ending
    in ``;`` outside a ``$$``-quoted body. (Citus propagates DDL on distributed tables
    statement by statement; it refuses a string of several.)"""
    found: list[str] = []
    current: list[str] = []
    quoted = False
    for line in script.splitlines():
        current.append(line)
        if line.count("$$") % 2:
            quoted = not quoted
        comment = line.strip().startswith("--")
        if not quoted and not comment and line.rstrip().endswith(";"):
            text = "\n".join(current).strip()
            if any(part.strip() and not part.strip().startswith("--") for part in current):
                found.append(text)
            current = []
    rest = "\n".join(current).strip()
    if any(part.strip() and not part.strip().startswith("--") for part in current):
        found.append(rest)
    return found
