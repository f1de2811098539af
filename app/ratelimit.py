"""Requests per minute per API key or user (per client address when anonymous), in Redis so
that every API process counts against the same budget."""

from __future__ import annotations

import time

from redis.asyncio import Redis

WINDOW = 60


async def hit(redis: Redis, namespace: str, identity: str, limit: int) -> int | None:
    """Counts one request; returns the seconds to wait when over `limit`, else None."""
    now = time.time()
    window = int(now // WINDOW)
    key = f"{namespace}:rl:{identity}:{window}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, WINDOW + 5)
        count, _ = await pipe.execute()
    if count > limit:
        return max(1, int((window + 1) * WINDOW - now + 0.999))
    return None
