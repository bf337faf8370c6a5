"""A small in-process cache of rendered runs.

A run's rows never change once stored, so its rendered JSON or CSV can be served
again without touching the database. What can change is presentation only: the
principals' and pipelines' current names, and a run deleted by ``prune``. Entries
therefore live for ``ttl`` seconds (``PIPELINE_COVERAGE_RUN_CACHE_SECONDS``), after
which the next request renders the run afresh.

A run is rendered once however many ask for it at the same time: when an entry has
expired under load, the requests that find it missing wait for the one rendering in
progress instead of each rendering it again (each of them behind the tenant's read
share: a dozen renderings of a large run, one after another, stalled that tenant's
reads for up to a second every ``ttl``).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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
        #: Renderings in progress (each on its event loop), by key.
        self._rendering: dict[tuple[uuid.UUID, uuid.UUID, str], asyncio.Task[Rendered]] = {}

    async def rendered(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        fmt: str,
        render: Callable[[], Awaitable[Rendered]],
    ) -> Rendered:
        """The kept rendering, else ``render()``'s, shared with every request for the same
        key that comes while it runs (and kept). It runs as a task of its own: a caller
        that goes away does not cancel it for the others. Its error is each caller's."""
        found = self.get(tenant_id, run_id, fmt)
        if found is not None:
            return found
        key = (tenant_id, run_id, fmt)
        task = self._rendering.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._render(key, render))
            self._rendering[key] = task
        return await asyncio.shield(task)

    async def _render(
        self,
        key: tuple[uuid.UUID, uuid.UUID, str],
        render: Callable[[], Awaitable[Rendered]],
    ) -> Rendered:
        try:
            result = await render()
            self.put(*key, result)
            return result
        finally:
            if self._rendering.get(key) is asyncio.current_task():
                del self._rendering[key]

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
