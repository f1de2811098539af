"""The engine, and sessions that run as the tenant's app role.

A tenant session runs every transaction as the app role with `app.workspace_id` set for that
transaction only (`set_config(..., true)`): row-level security then shows it its workspace and
nothing else, and a pooled connection carries nothing over to its next user. A system session
runs as the owner, for the few look-ups that precede knowing the workspace (logins, API keys).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from app.config import Settings

_SCOPE_TRANSACTION = text("select set_config('role', :role, true), set_config('app.workspace_id', :ws, true)")


class ScopedSession(Session):
    """A Session that runs each transaction as `info["app_role"]` in `info["workspace_id"]`, if set."""


@event.listens_for(ScopedSession, "after_begin")
def _scope_transaction(session: Session, _transaction: Any, connection: Any) -> None:
    if "app_role" in session.info:
        connection.execute(_SCOPE_TRANSACTION, {"role": session.info["app_role"], "ws": session.info["workspace_id"]})


class Database:
    def __init__(self, settings: Settings) -> None:
        self.app_role = settings.app_role
        self.engine: AsyncEngine = create_async_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_pre_ping=False,
            connect_args={"options": f"-c statement_timeout={settings.statement_timeout_ms}"},
        )
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=ScopedSession, autoflush=False
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def tenant(self, workspace_id: uuid.UUID | None) -> AsyncSession:
        """A session whose transactions see only `workspace_id`'s rows of tenant tables (none
        without a workspace: the policies fail closed on an empty setting)."""
        return self._sessions(info={"workspace_id": str(workspace_id or ""), "app_role": self.app_role})

    def system(self) -> AsyncSession:
        """A session as the owner: for auth look-ups that cross workspaces. Use sparingly."""
        return self._sessions()

    def lookup(self) -> AsyncConnection:
        """A pooled connection as the owner in autocommit, for the look-ups of every request
        (credentials): each statement is its own transaction, without a BEGIN and a ROLLBACK
        round trip around it."""
        return self._autocommit.connect()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("select 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
