"""Tenant API keys: the key decides the tenant of every HTTP request.

A key reads ``pcov_<tenant id hex>_<secret>``. Only its SHA-256 is stored, so a
database leak does not leak usable keys; the secret has 256 bits of entropy, so a
plain (unsalted) hash is enough. The tenant id in the key lets every lookup be a
``(tenant_id, key_hash)`` probe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pipeline_coverage.db.connection import (
    Connection,
    as_uuid,
    one_read,
    read_async,
    records,
    unit_of_work,
)
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.sql import query
from pipeline_coverage.validation import parse_uuid

PREFIX = "pcov"
#: How long a dashboard session lasts at most (signing out or revoking ends it sooner).
SESSION_LIFETIME_SECONDS = 8 * 3600
#: Dashboard sessions one key may have at once (live or recently ended): signing in
#: once more ends the oldest. Enough for every browser of a team sharing a key.
MAX_SESSIONS_PER_KEY = 20
_QUERIES = "api_keys"


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the secret itself)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key's tenant."""

    tenant_id: uuid.UUID
    tenant_name: str


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _from_record(record: Mapping[str, Any]) -> ApiKey:
    return ApiKey(
        id=as_uuid(record["id"]),
        tenant_id=as_uuid(record["tenant_id"]),
        name=record["name"],
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
    )


def _principal(found: list[dict[str, Any]]) -> Principal | None:
    """The principal of a lookup's one record (``tenant_id``, ``tenant_name``), if any."""
    if not found:
        return None
    return Principal(as_uuid(found[0]["tenant_id"]), found[0]["tenant_name"])


def create_api_key(
    conn: Connection, tenant_id: uuid.UUID | str, name: str = "default"
) -> tuple[ApiKey, str]:
    """Create a key for a tenant; returns the stored key and the secret (shown once)."""
    tenant = parse_uuid(tenant_id, "tenant_id")
    assert tenant is not None
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("name: must be 1 to 200 characters")
    key = f"{PREFIX}_{tenant.hex}_{secrets.token_urlsafe(32)}"
    with unit_of_work(conn) as cur:
        cur.execute(
            query(_QUERIES, "insert_key"),
            {"tenant_id": str(tenant), "name": name, "key_hash": _hash(key)},
        )
        found = records(cur)
        if not found:
            raise NotFoundError(f"tenant_id: no tenant {tenant}")
    return _from_record(found[0]), key


def list_api_keys(conn: Connection, tenant_id: uuid.UUID | str | None = None) -> list[ApiKey]:
    """Keys, newest first (every tenant's when ``tenant_id`` is None)."""
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "list_keys"), {"tenant_id": str(tenant) if tenant else None})
        return [_from_record(record) for record in records(cur)]


def revoke_api_key(
    conn: Connection, key_id: uuid.UUID | str, tenant_id: uuid.UUID | str | None = None
) -> ApiKey:
    """Revoke a key at once; revoking twice keeps the first revocation time."""
    key = parse_uuid(key_id, "key_id")
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    with unit_of_work(conn) as cur:
        cur.execute(
            query(_QUERIES, "revoke_key"),
            {"key_id": str(key), "tenant_id": str(tenant) if tenant else None},
        )
        found = records(cur)
    if not found:
        raise NotFoundError(f"key_id: no API key {key}")
    return _from_record(found[0])


def tenant_of_key(key: str) -> uuid.UUID | None:
    """The tenant id a well-formed key carries (None for anything else)."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 32 or not parts[2]:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


def key_hash(key: str) -> bytes:
    """What is stored of a key (and all a dashboard session keeps of it)."""
    return _hash(key)


def authenticate(conn: Connection, key: str) -> Principal | None:
    """The tenant an active key acts for; None for a missing, unknown or revoked key."""
    tenant = tenant_of_key(key)
    if tenant is None:
        return None
    return authenticate_hash(conn, tenant, _hash(key))


def authenticate_hash(conn: Connection, tenant_id: uuid.UUID, hashed: bytes) -> Principal | None:
    """Like ``authenticate``, from the tenant and hash of a key (a dashboard session)."""
    with one_read(conn) as cur:  # (once per API request: no transaction round trips)
        cur.execute(query(_QUERIES, "authenticate"), _key_params(tenant_id, hashed))
        return _principal(records(cur))


async def authenticate_async(conn: psycopg.AsyncConnection[Any], key: str) -> Principal | None:
    """``authenticate`` on an asyncio connection in autocommit (the API's key check)."""
    tenant = tenant_of_key(key)
    if tenant is None:
        return None
    found = await read_async(conn, query(_QUERIES, "authenticate"), _key_params(tenant, _hash(key)))
    return _principal(found)


def _key_params(tenant_id: uuid.UUID, hashed: bytes) -> dict[str, Any]:
    return {"tenant_id": str(tenant_id), "key_hash": hashed}


@dataclass(frozen=True)
class Session:
    """A dashboard session: what its cookie holds is ``(tenant_id, id)``."""

    id: uuid.UUID
    principal: Principal


def start_session(conn: Connection, key: str) -> Session | None:
    """Open a server-side session for an active key; None for a bad or revoked key.

    A key keeps at most ``MAX_SESSIONS_PER_KEY`` sessions: opening one more ends (and
    deletes) the oldest, so signing in in a loop cannot fill the table."""
    tenant = tenant_of_key(key)
    if tenant is None:
        return None
    params = {
        "tenant_id": str(tenant),
        "key_hash": _hash(key),
        "lifetime_seconds": SESSION_LIFETIME_SECONDS,
        "keep": MAX_SESSIONS_PER_KEY - 1,
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "start_session"), params)
        found = records(cur)
    principal = _principal(found)
    return None if principal is None else Session(as_uuid(found[0]["session_id"]), principal)


def authenticate_session(
    conn: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> Principal | None:
    """The tenant of a live session; None once it ended, expired or lost its key."""
    with one_read(conn) as cur:
        cur.execute(query(_QUERIES, "authenticate_session"), _session_params(tenant_id, session_id))
        return _principal(records(cur))


async def authenticate_session_async(
    conn: psycopg.AsyncConnection[Any], tenant_id: uuid.UUID, session_id: uuid.UUID
) -> Principal | None:
    """``authenticate_session`` on an asyncio connection in autocommit."""
    statement = query(_QUERIES, "authenticate_session")
    return _principal(await read_async(conn, statement, _session_params(tenant_id, session_id)))


def _session_params(tenant_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    return {"tenant_id": str(tenant_id), "session_id": str(session_id)}


def end_session(conn: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """End a session at once (signing out); ending an unknown or ended one is a no-op."""
    with unit_of_work(conn) as cur:
        cur.execute(
            query(_QUERIES, "end_session"),
            {"tenant_id": str(tenant_id), "session_id": str(session_id)},
        )
