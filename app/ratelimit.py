"""Requests per minute per API key or user (per client address when anonymous), in Redis so
that every API process counts against the same budget."""

from __future__ import annotations

import hashlib
import time

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

WINDOW = 60

# One round trip, atomic: the window's counter (its expiry set on the first hit), and a key's value.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if KEYS[2] then return {n, redis.call('GET', KEYS[2])} end
return {n, false}
"""
_COUNT_SHA = hashlib.sha1(_COUNT.encode()).hexdigest()


async def hit(redis: Redis, namespace: str, identity: str, limit: int) -> int | None:
    """Counts one request; returns the seconds to wait when over `limit`, else None."""
    retry_after, _ = await hit_and_get(redis, namespace, identity, limit)
    return retry_after


async def hit_and_get(
    redis: Redis, namespace: str, identity: str, limit: int, key: str | None = None
) -> tuple[int | None, bytes | None]:
    """`hit`, and the value of `key` read in the same round trip."""
    now = time.time()
    keys = [counter(namespace, identity, now), *([key] if key else [])]
    try:
        count, value = await redis.evalsha(_COUNT_SHA, len(keys), *keys, WINDOW + 5)
    except NoScriptError:  # a Redis that has not seen it yet (or was restarted) learns it
        count, value = await redis.eval(_COUNT, len(keys), *keys, WINDOW + 5)
    return (wait(now) if count > limit else None), value


def counter(namespace: str, identity: str, now: float) -> str:
    """The key counting `identity`'s requests in the window of `now` (to read it without counting)."""
    return f"{namespace}:rl:{identity}:{int(now // WINDOW)}"


def wait(now: float) -> int:
    """Seconds from `now` until the next window."""
    return max(1, int((int(now // WINDOW) + 1) * WINDOW - now + 0.999))
