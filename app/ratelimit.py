"""Requests per minute per API key or user (per client address when anonymous), and failed
authentications per credential and per address, in Redis so that every API process counts
against the same budgets."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.config import Settings
from app.services.errors import RateLimited

WINDOW = 60
VOUCHED_SECONDS = 30 * 24 * 3600  # how long a credential that authenticated counts as a known one

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


@dataclass(frozen=True)
class Standing:
    """Where a credential stands before its look-up."""

    vouched: bool  # it authenticated lately
    also: bytes | None  # the value of the key read with the counters


@dataclass(frozen=True)
class FailureBudget:
    """Failed authentications a minute, per credential and per client address.

    A credential's own budget (an API key's visible prefix, a login's email) bounds guessing at
    it. The address's, far larger, bounds what guessing at many credentials costs in look-ups.
    A credential that authenticated lately is vouched for: other people's failures from its
    address (everyone behind one NAT or proxy) never refuse it, only its own spent budget does.
    Past a budget nothing is looked up. Credentials that anyone can make are counted against
    the address; a signed token's failures only against its user.
    """

    redis: Redis
    namespace: str
    per_credential: int
    per_address: int

    @classmethod
    def of(cls, redis: Redis, settings: Settings) -> FailureBudget:
        return cls(redis, settings.redis_namespace, settings.auth_failures_per_credential, settings.auth_failures_per_address)

    async def check(self, identity: str | None, address: str | None, also: str | None = None) -> Standing:
        """Raises RateLimited when a credential of `identity` (None: one nobody can name, such as a
        refresh token) from `address` (None: not counted by address) may not be looked up now.
        Reads the key `also` in the same round trip."""
        now = time.time()
        keys: dict[str, str] = {}
        if identity is not None:
            keys.update(failed=self._failures(identity, now), vouched=self._vouch(identity))
        if address is not None:
            keys["failed here"] = self._failures_from(address, now)
        if also is not None:
            keys["also"] = also
        values = dict(zip(keys, await self.redis.mget(*keys.values()), strict=True)) if keys else {}
        if int(values.get("failed") or 0) >= self.per_credential:
            raise RateLimited("Too many failed authentications of this credential", wait(now))
        vouched = values.get("vouched") is not None
        if not vouched and int(values.get("failed here") or 0) >= self.per_address:
            raise RateLimited("Too many failed authentications from this address", wait(now))
        return Standing(vouched=vouched, also=values.get("also"))

    async def failed(self, identity: str | None, address: str | None) -> None:
        now = time.time()
        keys = [self._failures(identity, now)] if identity is not None else []
        if address is not None:
            keys.append(self._failures_from(address, now))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(key).expire(key, WINDOW + 5)
            await pipe.execute()

    async def succeeded(self, identity: str, standing: Standing) -> None:
        """`identity` is vouched for (again, once its mark has lapsed)."""
        if not standing.vouched:
            await self.redis.set(self._vouch(identity), 1, ex=VOUCHED_SECONDS)

    def _failures(self, identity: str, now: float) -> str:
        return counter(self.namespace, f"failed:{identity}", now)

    def _failures_from(self, address: str, now: float) -> str:
        return counter(self.namespace, f"failed-from:{address}", now)

    def _vouch(self, identity: str) -> str:
        return f"{self.namespace}:vouched:{identity}"
