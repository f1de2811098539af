"""The engine, and sessions that run as the tenant's app role.

A tenant session runs every transaction as the app role with `app.workspace_id` set for that
transaction only (`set_config(..., true)`): row-level security then shows it its workspace and
nothing else, and a pooled connection carries nothing over to its next user. A system session
runs as the owner, for the few look-ups that precede knowing the workspace (logins, API keys).

The statements of every request (the credential look-up, a planned read) skip the ORM: they run
on psycopg connections in autocommit from a pool of their own, one round trip each.

Both pools outlive database restarts without a round trip per checkout: a pooled connection is
idle, so a readable socket means the server has closed it (a restart's "terminating connection"
and EOF) and it is not used (`closed_by_server`, one poll() call). The ORM's pool then discards
every connection it holds (SQLAlchemy's pool invalidation); the direct pool is replaced by a new
one. A direct statement whose connection breaks under it (the server vanished without a word)
runs once more on a new connection: they are reads and one idempotent touch. While the server
is down, direct statements fail at once with `psycopg.OperationalError` (the pool's own
reconnection backs off to minutes, and its clients would wait for it), and the first one after
the server answers again reopens the pool.
"""

from __future__ import annotations

import asyncio
import select
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg._queries import PostgresQuery, _query2pg_nocache
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolClosed
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from app.config import Settings

_SCOPE_TRANSACTION = text("select set_config('role', :role, true), set_config('app.workspace_id', :ws, true)")

# The same for Database.read, whose transaction is read-only besides.
_SCOPE_READ = ("select set_config('role', %(role)s, true) as r, set_config('app.workspace_id', %(ws)s, true) as w,"
               " set_config('transaction_read_only', 'on', true) as ro")


CONNECT_TIMEOUT_SECONDS = 5
"How long opening a connection may take: an unreachable host fails requests in seconds, not minutes."
PROBE_INTERVAL_SECONDS = 1.0
"While the database is down, direct statements within this long of a failed attempt fail without another."


def closed_by_server(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has closed (or is closing) this idle connection: nothing is due on an
    idle connection, so a readable socket holds the server's goodbye (an error and EOF)."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


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
            pool_pre_ping=False,  # a round trip per checkout; `_discard_closed` costs a poll() call
            connect_args={"options": options, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
        event.listen(self.engine.sync_engine.pool, "checkout", _discard_closed)
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=ScopedSession, autoflush=False
        )
        self._url = settings.database_url or ""
        self._pool_size = settings.db_pool_size
        self._kwargs: dict[str, Any] = {
            "autocommit": True, "options": options, "row_factory": namedtuple_row,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        }
        self._direct = self._new_pool()
        self._opening: asyncio.Lock | None = None
        self._renewing: asyncio.Lock | None = None
        self._down_since: float | None = None
        "When a direct connection last failed to open (time.monotonic()); None while the database answers."
        self._closing: set[asyncio.Task[None]] = set()

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
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await self._execute(conn, sql, params)
            return await cursor.fetchall() if cursor.description else []

        return await self._direct_statement(run)

    async def read(self, workspace_id: uuid.UUID, sql: str, params: dict[str, Any]) -> list[Any]:
        """The rows (named tuples) of the read-only statement `sql`, run as the app role in
        `workspace_id`, in one round trip.

        The transaction's scope and the statement go out together in pipeline mode, without a
        Sync between them: PostgreSQL runs them as one implicit, read-only transaction, so the
        transaction-local role and workspace hold for the statement and end with it, without a
        session's BEGIN and ROLLBACK round trips. Both become prepared statements after a few
        runs (psycopg's prepare threshold): a planned query is not parsed again each time."""
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            async with conn.pipeline():
                await self._execute(conn, _SCOPE_READ, {"role": self.app_role, "ws": str(workspace_id)})
                cursor = await self._execute(conn, sql, params)
            return await cursor.fetchall()  # type: ignore[no-any-return]

        return await self._direct_statement(run)

    async def _direct_statement(self, run: Callable[[psycopg.AsyncConnection[Any]], Awaitable[list[Any]]]) -> list[Any]:
        """`run` on a pooled direct connection; on a new pool's when the server closed the
        pooled one (a restart) or it broke under the statement (only reads and an idempotent
        touch come here, so running one twice is safe)."""
        await self._open()
        pool = self._direct
        if self._down_since is None:
            try:
                async with pool.connection() as conn:
                    if not closed_by_server(conn):
                        try:
                            return await run(conn)
                        except psycopg.OperationalError:
                            if not conn.broken:
                                raise
                    await conn.close()  # the pool replaces a closed connection with a new one
            except PoolClosed:
                pass  # another request renewed the pool while this one waited for a connection
        await self._renew(pool)
        async with self._direct.connection() as conn:
            return await run(conn)

    async def _renew(self, failed: AsyncConnectionPool[Any]) -> None:
        """Replaces the pool `failed` by a new one once a connection opens; raises
        `psycopg.OperationalError` while none does. A failed pool's connections all came from
        the server that went away, and it would reconnect on its own only with a backoff that
        grows to minutes."""
        self._renewing = self._renewing or asyncio.Lock()
        async with self._renewing:
            if self._direct is not failed and self._down_since is None:
                return  # renewed by another request meanwhile
            if self._down_since is not None and time.monotonic() - self._down_since < PROBE_INTERVAL_SECONDS:
                raise psycopg.OperationalError("the database is unreachable")
            try:
                probe = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
            except psycopg.OperationalError:
                self._down_since = time.monotonic()
                raise
            await probe.close()
            self._direct = self._new_pool()
            await self._direct.open()
            self._down_since = None
            closing = asyncio.create_task(failed.close())  # its backed-off reconnections are cancelled
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self._url, min_size=1, max_size=self._pool_size, open=False, kwargs=self._kwargs,
        )

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
        cursor = _ReadCursor(conn, row_factory=conn.row_factory)
        dispatch = self.engine.sync_engine.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(None, cursor, sql, params, None, False)
        await cursor.execute(sql, params)
        return cursor

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("select 1"))

    async def dispose(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self._direct.close()
        await self.engine.dispose()


CONVERSIONS_KEPT = 256


class _KeptQuery(PostgresQuery):
    """A query whose conversion (`%(name)s` to `$1`, by a scan of the whole text) is kept.

    psycopg keeps the conversion of queries up to 4 KB only; a planned read
    (schema.plan) is one long statement run again and again, whose scan cost more than
    the rest of its execution in Python. The statements come from the compiled plans,
    so they are few: the most recently used CONVERSIONS_KEPT are kept."""

    _kept: OrderedDict[tuple[str | bytes, str], Any] = OrderedDict()

    def convert(self, query: Any, vars: Any) -> None:
        key = (query, self._tx.encoding)
        found = self._kept.get(key)
        if found is None:
            found = self._kept[key] = _query2pg_nocache(self._ensure_bytes(query), self._tx.encoding)
            if len(self._kept) > CONVERSIONS_KEPT:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end(key)
        self.query, self._want_formats, self._order, self._parts = found
        self.dump(vars)


class _ReadCursor(psycopg.AsyncCursor[Any]):
    _query_cls = _KeptQuery


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """At checkout from the ORM's pool: a connection the server has closed is not handed out;
    SQLAlchemy then discards every connection the pool held before now, as from a server that
    went away, and hands out a new one (or raises the connection error while there is none)."""
    if closed_by_server(dbapi_connection.driver_connection):
        raise exc.InvalidatePoolError("the server closed the connection")
