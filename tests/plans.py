"""Reading PostgreSQL's ``EXPLAIN (FORMAT JSON)`` output in tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan (or of a part of one), depth first."""
    if isinstance(plan, list):
        for item in plan:
            yield from plan_nodes(item)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from plan_nodes(value)
