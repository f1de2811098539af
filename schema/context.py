"""The per-operation context: who asks, and the operation's session and loaders.

The view builds one per HTTP request or WebSocket connection; `schema.extensions.OperationScope`
gives every operation a copy with a session and loaders of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info as StrawberryInfo

from app.config import Settings
from app.db.engine import Database
from app.security import Vault
from app.services.access import ANONYMOUS, Principal


def _plans() -> Any:
    from schema.plan.runner import Plans

    return Plans()


@dataclass
class Services:
    """Process-wide handles, made once at start-up (also where effects after commit go:
    `app.services.effects.Surroundings`)."""

    settings: Settings
    db: Database
    redis: Redis
    vault: Vault
    plans: Any = field(default_factory=_plans)
    "The compiled read plans of this process (schema.plan.runner.Plans)."


@dataclass
class Context:
    services: Services
    request: Any
    response: Any = None
    principal: Principal = ANONYMOUS
    request_id: str = ""
    connection_params: dict[str, Any] | None = None
    "When a socket's credential stops working by itself (None: never, or not a socket)."
    credential_expires_at: datetime | None = None
    _session: AsyncSession | None = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _loaders: Any = field(default=None, repr=False)

    def for_operation(self) -> Context:
        """A copy sharing the connection's identity, with a session and loaders of its own."""
        return Context(
            services=self.services, request=self.request, response=self.response, principal=self.principal,
            request_id=self.request_id, connection_params=self.connection_params,
        )

    @asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncSession]:
        """The operation's tenant session, lent to one user at a time: loader batches are
        dispatched concurrently and one AsyncSession runs one statement at a time."""
        async with self._lock:
            if self._session is None:
                self._session = self.services.db.tenant(self.principal.workspace_id)
            yield self._session

    @property
    def loaders(self) -> Any:
        if self._loaders is None:
            from schema.loaders import Loaders

            self._loaders = Loaders(self)
        return self._loaders

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def release(self) -> None:
        """Close the session and forget what the loaders read: a subscription calls it after
        each event, so an idle subscriber holds no connection and the next event reads afresh."""
        await self.close()
        self._loaders = None


Info = StrawberryInfo[Context, None]
