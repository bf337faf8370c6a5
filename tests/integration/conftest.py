"""Fixtures of the HTTP API's tests: a world per tenant and a client of the live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.worlds import World, build_world


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> World:
    return build_world(conn, "Acme")


@pytest.fixture
def other(conn: psycopg.Connection[Any]) -> World:
    return build_world(conn, "Globex")


@pytest.fixture
def api(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client
