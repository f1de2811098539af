"""Live events over Redis pub/sub, so a subscriber on any API process sees changes made by any
process. Published only after the change has committed.

Two kinds of channel: a workspace's events (`contact.created`, `job.updated`, ...) and one job's
state snapshots (what `jobProgress` streams). A process holds one Redis pub/sub connection per
client (`Hub`), decodes each message once and fans the same `Message` out to its subscribers,
each with a bounded buffer: a slow consumer loses its oldest buffered messages rather than
growing the server's memory (a job's snapshot supersedes the ones before it, and the newest,
terminal one included, is never the one dropped).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.asyncio import Redis

log = logging.getLogger("ctxgraph.pubsub")
T = TypeVar("T")

BUFFER = 256
"Messages buffered per subscriber; a job snapshot supersedes the ones before it, so dropping the oldest is safe."


def workspace_channel(workspace_id: uuid.UUID) -> str:
    return f"ctxgraph:ws:{workspace_id}:events"


def job_channel(job_id: uuid.UUID) -> str:
    return f"ctxgraph:job:{job_id}"


def api_key_channel(key_id: uuid.UUID) -> str:
    """Where a revoked or rotated API key is announced: its open sockets re-authenticate."""
    return f"ctxgraph:apikey:{key_id}"


async def publish_api_key_change(redis: Redis, key_id: uuid.UUID) -> None:
    await redis.publish(api_key_channel(key_id), json.dumps({"apiKeyId": str(key_id)}))


async def publish_event(
    redis: Redis, workspace_id: uuid.UUID, event_type: str, node_type: str | None, node_id: uuid.UUID | None
) -> None:
    """`event_type` is `<domain>.<created|updated|deleted|...>`, e.g. `contact.created`."""
    message = {
        "type": event_type,
        "nodeType": node_type,
        "nodeId": str(node_id) if node_id else None,
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    await redis.publish(workspace_channel(workspace_id), json.dumps(message))


async def publish_job(redis: Redis, job_id: uuid.UUID, snapshot: dict[str, Any]) -> None:
    """A job's whole state after a committed change (see app.services.jobs.snapshot)."""
    await redis.publish(job_channel(job_id), json.dumps(snapshot))


class Message:
    """One decoded message, the same object for every subscriber of its channel in this process:
    `derive` computes a value from it once for all of them (the GraphQL object they stream)."""

    __slots__ = ("_derived", "data")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._derived: dict[str, Any] = {}

    def derive(self, name: str, make: Callable[[dict[str, Any]], T]) -> T:
        if name not in self._derived:
            self._derived[name] = make(self.data)
        return self._derived[name]  # type: ignore[no-any-return]


class Subscriber:
    """One subscription's bounded buffer of messages."""

    def __init__(self, size: int = BUFFER) -> None:
        self._messages: collections.deque[Message] = collections.deque(maxlen=size)
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0

    def push(self, message: Message) -> None:
        if len(self._messages) == self._messages.maxlen:
            self.dropped += 1
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Message:
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()


class Hub:
    """Shares one pub/sub connection among every subscriber of this process and event loop."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub()
        self._channels: dict[str, set[Subscriber]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscriber]:
        """A subscriber of `channel`, live (Redis confirmed the subscription) when this yields."""
        subscriber = Subscriber()
        async with self._lock:
            subscribers = self._channels.setdefault(channel, set())
            subscribers.add(subscriber)
            if len(subscribers) == 1:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="ctxgraph-pubsub")
            confirmed = self._confirmed[channel]
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), timeout=10)
            yield subscriber
        finally:
            async with self._lock:
                subscribers = self._channels.get(channel, set())
                subscribers.discard(subscriber)
                if not subscribers and channel in self._channels:
                    del self._channels[channel]
                    self._confirmed.pop(channel, None)
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - connection lost: redis-py reconnects and resubscribes
                log.warning("pub/sub connection failed, retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            if message["type"] == "subscribe":
                future = self._confirmed.get(channel)
                if future is not None and not future.done():
                    future.set_result(None)
            elif message["type"] == "message":
                subscribers = self._channels.get(channel)
                if subscribers:
                    try:
                        decoded = Message(json.loads(message["data"]))
                    except ValueError:
                        log.warning("undecodable message on %s", channel)
                        continue
                    for subscriber in subscribers:
                        subscriber.push(decoded)


_hubs: weakref.WeakKeyDictionary[Redis, Hub] = weakref.WeakKeyDictionary()


def hub(redis: Redis) -> Hub:
    """The process's hub for this Redis client (one client per app, so one hub per app)."""
    found = _hubs.get(redis)
    if found is None:
        found = _hubs[redis] = Hub(redis)
    return found


async def close_hub(redis: Redis) -> None:
    """Stop the hub's reader and close its connection (at app shutdown)."""
    found = _hubs.pop(redis, None)
    if found is not None:
        await found.close()
