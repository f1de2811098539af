"""Live events over Redis pub/sub, so a subscriber on any API process sees changes made by any
process. Published only after the change has committed.

Two kinds of channel: a workspace's events (`contact.created`, `job.updated`, ...) and one job's
state snapshots (what `jobProgress` streams). A process holds one Redis pub/sub connection per
client (`Hub`), decodes each message once and fans the same `Message` out to its subscribers,
each with a bounded buffer: a slow consumer loses its oldest buffered messages rather than
growing the server's memory (a job's snapshot supersedes the ones before it, and the newest,
terminal one included, is never the one dropped).

When the connection drops, redis-py reconnects (the hub retries with a backoff) and subscribes
again; what was published meanwhile is gone. Each subscriber then learns of the gap (`Gap`, once
its buffer is drained), so that it can re-read the state from PostgreSQL or tell its client.
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
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("ctxgraph.pubsub")
T = TypeVar("T")

BUFFER = 256
"Messages buffered per subscriber; a job snapshot supersedes the ones before it, so dropping the oldest is safe."
RETRY_FIRST, RETRY_MAX = 0.1, 2.0
"Seconds between reconnection attempts of a hub, doubling from the first to the most."


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
    await publish_events(redis, [(workspace_id, event_type, node_type, node_id)])


async def publish_events(
    redis: Redis, events: list[tuple[uuid.UUID, str, str | None, uuid.UUID | None]]
) -> None:
    """Workspace events (workspace, type, node type, node id) in one round trip: an import batch
    announces each of its items."""
    occurred_at = datetime.now(UTC).isoformat()
    async with redis.pipeline(transaction=False) as pipe:
        for workspace_id, event_type, node_type, node_id in events:
            message = {"type": event_type, "nodeType": node_type, "nodeId": str(node_id) if node_id else None,
                       "occurredAt": occurred_at}
            pipe.publish(workspace_channel(workspace_id), json.dumps(message))
        await pipe.execute()


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


class Gap(Exception):
    """The channel's messages published while the pub/sub connection was down are lost; it is
    live again."""


class Subscriber:
    """One subscription's bounded buffer of messages."""

    def __init__(self, size: int = BUFFER) -> None:
        self._messages: collections.deque[Message] = collections.deque(maxlen=size)
        self._waiter: asyncio.Future[None] | None = None
        self._gap = False
        self.dropped = 0

    def push(self, message: Message) -> None:
        if len(self._messages) == self._messages.maxlen:
            self.dropped += 1
        self._messages.append(message)
        self._wake()

    def lost(self) -> None:
        """Messages may have been lost: `get` raises `Gap` once the buffer is drained."""
        self._gap = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Message:
        """The next message; raises `Gap` (once) when messages were lost after those buffered."""
        while not self._messages:
            if self._gap:
                self._gap = False
                raise Gap
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
        self._up, self._down = asyncio.Event(), asyncio.Event()
        self._up.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscriber]:
        """A subscriber of `channel`, live (Redis confirmed the subscription) when this yields.
        Raises redis-py's ConnectionError / TimeoutError while Redis is unreachable."""
        subscriber = Subscriber()
        async with self._lock:
            subscribers = self._channels.setdefault(channel, set())
            subscribers.add(subscriber)
            if len(subscribers) == 1:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                try:
                    await self._pubsub.subscribe(channel)
                except BaseException:
                    await self._leave(channel, subscriber)
                    raise
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="ctxgraph-pubsub")
            confirmed = self._confirmed[channel]
        try:
            try:
                await asyncio.wait_for(asyncio.shield(confirmed), timeout=10)
            except TimeoutError as exc:
                raise RedisTimeoutError(f"Redis did not confirm the subscription to {channel}") from exc
            yield subscriber
        finally:
            async with self._lock:
                await self._leave(channel, subscriber)

    async def _leave(self, channel: str, subscriber: Subscriber) -> None:
        """Forgets `subscriber`, and the channel with its last one (under the lock)."""
        subscribers = self._channels.get(channel, set())
        subscribers.discard(subscriber)
        if not subscribers and channel in self._channels:
            del self._channels[channel]
            self._confirmed.pop(channel, None)
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)

    async def unreachable_for(self, seconds: float) -> None:
        """Returns once this hub's connection has been down for `seconds` on end (it is only
        watched while someone subscribes)."""
        while True:
            await self._down.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), seconds)
                continue
            return

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def _read(self) -> None:
        retry = RETRY_FIRST
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - connection lost: the next call reconnects and resubscribes
                if not self._down.is_set():
                    log.warning("pub/sub connection lost; reconnecting", exc_info=True)
                    self._up.clear()
                    self._down.set()
                await asyncio.sleep(retry)
                retry = min(RETRY_MAX, retry * 2)
                continue
            if self._down.is_set():
                log.warning("pub/sub connection back")
                self._down.clear()
                self._up.set()
                retry = RETRY_FIRST
            if message is None:
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            if message["type"] == "subscribe":
                future = self._confirmed.get(channel)
                if future is not None and not future.done():
                    future.set_result(None)
                elif future is not None:  # subscribed again after a reconnection: what came meanwhile is lost
                    for subscriber in self._channels.get(channel, ()):
                        subscriber.lost()
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
