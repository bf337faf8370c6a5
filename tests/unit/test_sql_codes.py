"""The run statement's integer codes (`kind`, `reason`) are named once, in the legend
at its head, and every use says which it is (`2 /* WON */`): these tests keep the two
in step, so that a code cannot silently mean something else in one place."""

from __future__ import annotations

import re

from pipeline_coverage.sql import query

_LEGEND = re.compile(r"^-- Codes\..*?(?=^WITH$)", re.MULTILINE | re.DOTALL)
_FAMILY = re.compile(r"^--\s+(?P<family>kind|reason)\s{2,}", re.MULTILINE)
_CODE = re.compile(r"\b(?P<number>\d+) (?P<name>[A-Z][A-Z_]+)\b")
_USE = re.compile(r"\b(?P<number>\d+) /\* (?P<name>[A-Z][A-Z_]*) \*/")
#: A code compared or chosen without its name.
_BARE = (
    re.compile(r"\b(?:kind|reason)\s*(?:=|>=|<=|<>|<|>)\s*\d+\b(?!\s*/\*)"),
    re.compile(r"\bWHEN \d+ THEN\b"),
)


def legend(statement: str) -> dict[str, dict[str, int]]:
    """{family: {name: code}} from the statement's legend."""
    found = _LEGEND.search(statement)
    assert found, "insert_coverage has no '-- Codes.' legend before its WITH"
    text = found.group(0)
    families: dict[str, dict[str, int]] = {}
    marks = list(_FAMILY.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        part = text[mark.end() : following.start() if following else len(text)]
        families[mark["family"]] = {m["name"]: int(m["number"]) for m in _CODE.finditer(part)}
    return families


def problems(statement: str) -> list[str]:
    """Every use whose number is not its name's, every name never used, every bare code."""
    names = legend(statement)
    codes = {name: code for family in names.values() for name, code in family.items()}
    body = statement[_LEGEND.search(statement).end() :]  # type: ignore[union-attr]
    found = []
    used = set()
    for use in _USE.finditer(body):
        name, number = use["name"], int(use["number"])
        used.add(name)
        if name not in codes:
            found.append(f"{use.group(0)}: {name} is not in the legend")
        elif codes[name] != number:
            found.append(f"{use.group(0)}: the legend says {codes[name]} {name}")
    found += [f"{name} is never used" for name in codes if name not in used]
    for pattern in _BARE:
        found += [f"{m.group(0)!r}: a code without its name" for m in pattern.finditer(body)]
    return found


def test_the_legend_names_every_code_of_both_families() -> None:
    names = legend(query("coverage", "insert_coverage"))
    assert names["kind"] == {
        "NOT_COUNTED": 0, "WON": 2, "LOST": 3, "UNDATED": 4, "HISTORY_WON": 5,
        "HISTORY_LOST": 6, "OPEN": 10, "OPEN_COMMIT": 11, "OPEN_BEST_CASE": 12,
        "OPEN_PIPELINE": 13, "OPEN_OMITTED": 14,
    }  # fmt: skip
    # SPEC.md §7's credit reasons, in its order: the first that applies wins.
    assert list(names["reason"]) == [
        "OWNER", "ASSIGNEE", "OWNER_GROUP", "ASSIGNED_GROUP", "MEMBER", "SUBGROUP",
    ]  # fmt: skip
    assert list(names["reason"].values()) == [1, 2, 3, 4, 5, 6]


def test_every_use_of_a_code_is_named_as_the_legend_names_it() -> None:
    assert problems(query("coverage", "insert_coverage")) == []


def test_a_misnamed_or_unnamed_code_is_caught() -> None:
    statement = query("coverage", "insert_coverage")
    assert "cd.kind = 2 /* WON */" in statement
    swapped = statement.replace("cd.kind = 2 /* WON */", "cd.kind = 3 /* WON */", 1)
    assert problems(swapped) == ["3 /* WON */: the legend says 2 WON"]
    bare = statement.replace("cd.kind = 2 /* WON */", "cd.kind = 2", 1)
    assert problems(bare) == ["'kind = 2': a code without its name"]
