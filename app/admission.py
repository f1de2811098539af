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

Guessing costs the database nothing: a credential that fails the offline checks (an API key's
checksum, a token's signature and expiry) is refused without a look-up and counts against no
one. One that passes them and still fails is counted (`ratelimit.FailureBudget`) against
itself (an API key's visible prefix, a token's user) and, when anyone could have made it (an
API key), against the client address; past a budget it is refused (429) before any look-up for
the rest of the minute. Other people's failures from an address never refuse a credential that
authenticated lately (everyone behind one NAT), nor a remembered one.

The remembered credentials are shared by every request of the process: nothing is removed from
them while a look-up is awaited, and each request bumps what it read before it awaits anything,
so concurrent requests across a lapse never find an entry gone from under them.
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
from app.ratelimit import FailureBudget
from app.services import auth
from app.services.access import Principal
from app.services.errors import Forbidden, Unauthenticated

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
    def __init__(self, db: Database, redis: Redis, settings: Settings, remember_seconds: float = REMEMBER_SECONDS) -> None:
        self.db, self.redis, self.settings = db, redis, settings
        self.remember_seconds = remember_seconds
        self.failures = FailureBudget.of(redis, settings)
        self._namespace, self._epoch_key = settings.redis_namespace, _epoch_key(settings)
        self._seen: OrderedDict[Credential, _Seen] = OrderedDict()

    async def admit(self, credential: Credential, client: str) -> tuple[Principal, int | None]:
        """The principal of `credential` and, when it is over its rate, the seconds to wait
        (None when within). Bad credentials raise the auth service's errors."""
        authorization, api_key, workspace = credential
        if not authorization and not api_key:  # anonymous: nothing to look up (the workspace header is still checked)
            principal, _ = await auth.look_up(self.db, None, workspace)
            retry_after, _ = await self._hit(f"ip:{client}")
            return principal, retry_after
        seen = self._seen.get(credential)
        if seen is not None and seen.until > time.monotonic():
            self._seen.move_to_end(credential)  # before awaiting: a concurrent request may replace or drop it meanwhile
            retry_after, epoch = await self._hit(_identity(seen.principal, client))
            if epoch == seen.epoch:
                return seen.principal, retry_after
            return await self._look_up(credential, epoch, client), retry_after  # counted already: same key or user
        presented = self._present(credential)
        standing = await self.failures.check(  # and the epoch before the look-up, never after
            presented.identity, _address(presented, client), also=self._epoch_key
        )
        principal = await self._look_up(credential, int(standing.also or 0), client, presented)
        await self.failures.succeeded(presented.identity, standing)
        retry_after, _ = await self._hit(_identity(principal, client))
        return principal, retry_after

    async def identify_socket(self, credential: Credential, client: str) -> tuple[Principal, datetime | None]:
        """A WebSocket's principal and its credential's expiry, from connection_init: within the
        same failure budgets as requests (a socket authenticates once, so nothing is remembered)."""
        presented = self._present(credential)
        address = _address(presented, client)
        standing = await self.failures.check(presented.identity, address)
        try:
            found = await auth.look_up(self.db, presented, credential[2])
        except (Unauthenticated, Forbidden):
            await self.failures.failed(presented.identity, address)
            raise
        await self.failures.succeeded(presented.identity, standing)
        return found

    def _present(self, credential: Credential) -> auth.Presented:
        """The credential checked offline: what fails here is refused, looked up nowhere and counted against no one."""
        authorization, api_key, _ = credential
        presented = auth.present(self.settings, authorization=authorization, api_key=api_key)
        assert presented is not None  # not anonymous
        return presented

    async def _look_up(
        self, credential: Credential, epoch: int, client: str, presented: auth.Presented | None = None
    ) -> Principal:
        presented = presented or self._present(credential)
        try:
            principal, expires_at = await auth.look_up(self.db, presented, credential[2])
        except (Unauthenticated, Forbidden):
            self._seen.pop(credential, None)
            await self.failures.failed(presented.identity, _address(presented, client))
            raise
        lasts = self.remember_seconds
        if expires_at is not None:
            lasts = min(lasts, (expires_at - datetime.now(UTC)).total_seconds())
        self._seen[credential] = _Seen(principal, epoch, time.monotonic() + lasts)
        self._seen.move_to_end(credential)
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


def _address(presented: auth.Presented, client: str) -> str | None:
    """Where a failure of `presented` counts too: the client's address, unless the credential is
    one nobody but its holder can make (a signed token)."""
    return client if presented.guessable else None
