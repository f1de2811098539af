"""The engine, and sessions that run as the tenant's app role.

A tenant session runs every transaction as the app role with `app.workspace_id` set for that
transaction only (`set_config(..., true)`): row-level security then shows it its workspace and
nothing else, and a pooled connection carries nothing over to its next user. A system session
runs as the owner, for the few look-ups that precede knowing the workspace (logins, API keys).

The statements of every request (the credential look-up, a planned read) skip the ORM: they run
on psycopg connections in autocommit from a pool of their own, one round trip each.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from app.config import Settings

_SCOPE_TRANSACTION = text("select set_config('role', :role, true), set_config('app.workspace_id', :ws, true)")

# The same for Database.read, whose transaction is read-only besides.
_SCOPE_READ = ("select set_config('role', %(role)s, true) as r, set_config('app.workspace_id', %(ws)s, true) as w,"
               " set_config('transaction_read_only', 'on', true) as ro")


class ScopedSession(Session):
    """A Session that runs each transaction as `info["app_role"]` in `info["workspace_id"]`, if set."""


@event.listens_for(ScopedSession, "after_begin")
def _scope_transaction(session: Session, transaction: Any, connection: Any) -> None:
    if "app_role" in session.info and not transaction.nested:  # a savepoint is inside the scoped transaction
        connection.execute(_SCOPE_TRANSACTION, {"role": session.info["app_role"], "ws": session.info["workspace_id"]})


class Database:
    def __init__(self, settings: Settings) -> None:
        self.app_role = settings.app_role
        options = f"-c statement_timeout={settings.statement_timeout_ms}"
        self.engine: AsyncEngine = create_async_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_pre_ping=False,
            connect_args={"options": options},
        )
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=ScopedSession, autoflush=False
        )
        self._direct = AsyncConnectionPool(
            settings.database_url or "", min_size=1, max_size=settings.db_pool_size, open=False,
            kwargs={"autocommit": True, "options": options, "row_factory": namedtuple_row},
        )
        self._opening: asyncio.Lock | None = None

    def tenant(self, workspace_id: uuid.UUID | None) -> AsyncSession:
        """A session whose transactions see only `workspace_id`'s rows of tenant tables (none
        without a workspace: the policies fail closed on an empty setting)."""
        return self._sessions(info={"workspace_id": str(workspace_id or ""), "app_role": self.app_role})

    def system(self) -> AsyncSession:
        """A session as the owner: for auth look-ups that cross workspaces. Use sparingly."""
        return self._sessions()

    async def lookup(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """The rows (named tuples) of one statement as the owner, in autocommit: the credential
        look-ups of every request, before any workspace is known."""
        await self._open()
        async with self._direct.connection() as conn:
            cursor = await self._execute(conn, sql, params)
            return await cursor.fetchall() if cursor.description else []

    async def read(self, workspace_id: uuid.UUID, sql: str, params: dict[str, Any]) -> list[Any]:
        """The rows (named tuples) of the read-only statement `sql`, run as the app role in
        `workspace_id`, in one round trip.

        The transaction's scope and the statement go out together in pipeline mode, without a
        Sync between them: PostgreSQL runs them as one implicit, read-only transaction, so the
        transaction-local role and workspace hold for the statement and end with it, without a
        session's BEGIN and ROLLBACK round trips. Both become prepared statements after a few
        runs (psycopg's prepare threshold): a planned query is not parsed again each time."""
        await self._open()
        async with self._direct.connection() as conn:
            async with conn.pipeline():
                await self._execute(conn, _SCOPE_READ, {"role": self.app_role, "ws": str(workspace_id)})
                cursor = await self._execute(conn, sql, params)
            return await cursor.fetchall()

    async def _open(self) -> None:
        """Opens the direct pool on first use, in the loop that uses it."""
        if self._direct.closed:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._direct.closed:
                    await self._direct.open()

    async def _execute(self, conn: Any, sql: str, params: dict[str, Any]) -> Any:
        """Runs `sql` on a direct connection, telling the engine's statement listeners (the
        counters of tests and benches) as if the engine ran it."""
        cursor = conn.cursor()
        dispatch = self.engine.sync_engine.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(None, cursor, sql, params, None, False)
        await cursor.execute(sql, params)
        return cursor

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("select 1"))

    async def dispose(self) -> None:
        await self._direct.close()
        await self.engine.dispose()
