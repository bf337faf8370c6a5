"""A small in-process cache of rendered runs.

A run's rows never change once stored, so its rendered JSON or CSV can be served
again without touching the database. What can change is presentation only: the
principals' and pipelines' current names, and a run deleted by ``prune``. Entries
therefore live for ``ttl`` seconds (``PIPELINE_COVERAGE_RUN_CACHE_SECONDS``), after
which the next request renders the run afresh.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Rendered:
    """A rendered run: body, media type and entity tag."""

    body: bytes
    media_type: str
    etag: str


class RunCache:
    """Least-recently-used, time-limited, thread-safe; keyed by tenant, run and format."""

    def __init__(self, ttl: float, max_entries: int = 64, max_bytes: int = 64 << 20) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        #: Total size kept; a body larger than a quarter of it is never kept.
        self.max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[uuid.UUID, uuid.UUID, str], tuple[float, Rendered]]
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant_id: uuid.UUID, run_id: uuid.UUID, fmt: str) -> Rendered | None:
        if self.ttl <= 0:
            return None
        key = (tenant_id, run_id, fmt)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, rendered = entry
            if time.monotonic() - stored_at > self.ttl:
                del self._entries[key]
                self._bytes -= len(rendered.body)
                return None
            self._entries.move_to_end(key)
            return rendered

    def put(self, tenant_id: uuid.UUID, run_id: uuid.UUID, fmt: str, rendered: Rendered) -> None:
        if self.ttl <= 0 or len(rendered.body) > self.max_bytes // 4:
            return
        key = (tenant_id, run_id, fmt)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1].body)
            self._entries[key] = (time.monotonic(), rendered)
            self._bytes += len(rendered.body)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped.body)
