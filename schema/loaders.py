"""Per-operation dataloaders, memoised on the context: one batch query per entity and level.

Built lazily inside the running loop (aiodataloader binds the loop in its constructor).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.access import Principal

if TYPE_CHECKING:
    from schema.context import Context

Fetch = Callable[[AsyncSession, Principal, list[Any]], Awaitable[dict[Any, Any]]]


class Loaders:
    def __init__(self, context: Context) -> None:
        self._context = context
        self._loaders: dict[Hashable, DataLoader] = {}

    def get(self, fetch: Fetch) -> DataLoader:
        """The loader of `fetch(session, principal, keys) -> {key: value}`; missing keys load None."""
        loader = self._loaders.get(fetch)
        if loader is None:
            context = self._context

            async def batch(keys: list[Any]) -> list[Any]:
                async with context.db() as session:
                    found = await fetch(session, context.principal, list(keys))
                return [found.get(k) for k in keys]

            loader = self._loaders[fetch] = DataLoader(batch)
        return loader

    async def load(self, fetch: Fetch, key: uuid.UUID) -> Any:
        return await self.get(fetch).load(key)
