"""Where actors run their async work: one event loop thread per worker process, with its own
database engine and Redis client (async connections belong to the loop that made them).

Dramatiq calls actors in its worker threads; each hands its coroutine to this loop and waits.
The loop also runs the reaper, which re-sends jobs whose worker vanished or whose message was
lost (see app.services.jobs.orphans).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.config import Settings
from app.db.engine import Database

log = logging.getLogger("ctxgraph.jobs")
T = TypeVar("T")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ctxgraph-jobs-loop", daemon=True)
        self._thread.start()
        self.db = Database(settings)
        # A call on a connection Redis dropped (a restart) runs once more on a new one, as the API's do.
        self.redis = Redis.from_url(settings.redis_url or "", retry=Retry(NoBackoff(), 1))
        self._reaper: Future[None] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (from a worker thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start_reaper(self) -> None:
        from app.jobs.runner import reap

        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.run_coroutine_threadsafe(reap(self), self.loop)

    def stop_reaper(self) -> None:
        if self._reaper is not None:
            self.loop.call_soon_threadsafe(self._reaper.cancel)
            self._reaper = None

    def close(self) -> None:
        self.stop_reaper()

        async def dispose() -> None:
            await self.db.dispose()
            await self.redis.aclose()

        try:
            self.run(dispose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


_lock = threading.Lock()
_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    """This process's runtime for `settings` (a new one replaces a runtime of other settings)."""
    global _current
    with _lock:
        if _current is None or _current.settings != settings:
            previous, _current = _current, Runtime(settings)
            if previous is not None:
                previous.close()
        return _current


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no job runtime: start a worker (app.jobs.worker)")
    return _current
