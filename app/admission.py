"""Admission at the gate: who is asking, and whether they are within their rate.

Done naively each costs a round trip per request: the credential look-up in PostgreSQL, the
rate-limit counter in Redis. Here a request whose credential this process saw lately costs the
Redis call alone: the rate-limit script also returns the credentials epoch, a counter that every
change to API keys and memberships bumps once it has committed (`credentials_changed`), and a
remembered principal is used only while the epoch it was looked up under is current. So a
revoked key, a removed member or a changed role is refused from the next request on, by every
API process. A remembered principal also lapses with its credential (a token's expiry, a key's
expiresAt) and after REMEMBER_SECONDS, which bounds how long a change made outside the API (SQL
by hand) goes unseen.

Credentials that fail are counted per client address, against the same budget a minute as
requests: past it the address is refused (429) before any look-up for the rest of the minute,
whatever it sends, so guessing costs the database nothing and tells nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from app import ratelimit
from app.config import Settings
from app.db.engine import Database
from app.services import auth
from app.services.access import Principal
from app.services.errors import Forbidden, RateLimited, Unauthenticated

REMEMBER_SECONDS = 60.0
REMEMBERED_MAX = 10_000

Credential = tuple[str | None, str | None, str | None]  # authorization, API key, workspace header


@dataclass(frozen=True)
class _Seen:
    principal: Principal
    epoch: int
    until: float  # time.monotonic() after which it must be looked up again


def _epoch_key(settings: Settings) -> str:
    return f"{settings.redis_namespace}:credentials-epoch"


async def credentials_changed(redis: Redis, settings: Settings) -> None:
    """Every API process looks credentials up afresh from the next request on. Call after commit."""
    await redis.incr(_epoch_key(settings))


class Admission:
    def __init__(self, db: Database, redis: Redis, settings: Settings) -> None:
        self.db, self.redis, self.settings = db, redis, settings
        self._namespace, self._epoch_key = settings.redis_namespace, _epoch_key(settings)
        self._seen: OrderedDict[Credential, _Seen] = OrderedDict()

    async def admit(self, credential: Credential, client: str) -> tuple[Principal, int | None]:
        """The principal of `credential` and, when it is over its rate, the seconds to wait
        (None when within). Bad credentials raise the auth service's errors."""
        authorization, api_key, _ = credential
        if not authorization and not api_key:  # anonymous: nothing to look up (the workspace header is still checked)
            principal, _ = await self._identify(credential)
            retry_after, _ = await self._hit(f"ip:{client}")
            return principal, retry_after
        seen = self._seen.get(credential)
        if seen is not None and seen.until > time.monotonic():
            retry_after, epoch = await self._hit(_identity(seen.principal, client))
            if epoch == seen.epoch:
                self._seen.move_to_end(credential)
                return seen.principal, retry_after
            return await self._look_up(credential, epoch, client), retry_after  # counted already: same key or user
        now = time.time()
        failures_key = ratelimit.counter(self._namespace, f"failed:{client}", now)
        epoch, failures = await self.redis.mget(self._epoch_key, failures_key)  # the epoch before the look-up, never after
        if int(failures or 0) >= self.settings.rate_limit_per_minute:
            raise RateLimited("Too many failed authentications from this address", ratelimit.wait(now))
        principal = await self._look_up(credential, int(epoch or 0), client)
        retry_after, _ = await self._hit(_identity(principal, client))
        return principal, retry_after

    async def _identify(self, credential: Credential) -> tuple[Principal, datetime | None]:
        authorization, api_key, workspace = credential
        return await auth.identify(self.db, self.settings, authorization=authorization, api_key=api_key, workspace=workspace)

    async def _look_up(self, credential: Credential, epoch: int, client: str) -> Principal:
        self._seen.pop(credential, None)
        try:
            principal, expires_at = await self._identify(credential)
        except (Unauthenticated, Forbidden):
            await ratelimit.hit(self.redis, self._namespace, f"failed:{client}", self.settings.rate_limit_per_minute)
            raise
        lasts = REMEMBER_SECONDS
        if expires_at is not None:
            lasts = min(lasts, (expires_at - datetime.now(UTC)).total_seconds())
        self._seen[credential] = _Seen(principal, epoch, time.monotonic() + lasts)
        if len(self._seen) > REMEMBERED_MAX:
            self._seen.popitem(last=False)
        return principal

    async def _hit(self, identity: str) -> tuple[int | None, int]:
        """Counts one request of `identity`: (the seconds to wait when over the limit; the epoch)."""
        retry_after, epoch = await ratelimit.hit_and_get(
            self.redis, self._namespace, identity, self.settings.rate_limit_per_minute, self._epoch_key
        )
        return retry_after, int(epoch or 0)


def _identity(principal: Principal, client: str) -> str:
    return principal.rate_key or f"ip:{client}"
