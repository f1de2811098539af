"""What a transaction changes outside PostgreSQL: workspace events, job messages, the credentials
epoch. Services register them on the session as they write; they happen once its transaction
has committed and never when it rolls back, so a mutation and an import that write the same item
announce the same things, and nothing announces a write that did not happen.

Registration follows the session's transactions (SQLAlchemy session events): an effect registered
inside a savepoint that is rolled back is dropped with it (an import item that fails alone), one
of a transaction that commits becomes due. Whoever commits a unit of work runs what became due:
`await effects.commit(session, surroundings)`, as the mutation helper (`schema.mutations`) and the
actors (`app.jobs`) do.

An effect that finds Redis (or the broker) unreachable is logged and skipped: the change stands,
so the caller must hear that it succeeded (a lost event; or a credentials epoch not bumped, which
remembered credentials outlive by 60 s at most). Any other error of an effect propagates.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app import outages
from app.config import Settings
from app.pubsub import publish_events

log = logging.getLogger("ctxgraph.effects")

_PENDING = "effects.pending"
"session.info key: (transaction, effect) registered in transactions still open."
_DUE = "effects.due"
"session.info key: the effects of transactions that committed, in order, not run yet."


class Surroundings(Protocol):
    """Where effects go: the API's `schema.context.Services` and the worker's `Runtime` both are."""

    @property
    def redis(self) -> Redis: ...

    @property
    def settings(self) -> Settings: ...


Effect = Callable[[Surroundings], Awaitable[None]]


@dataclass(frozen=True)
class Event:
    """A workspace event (`contact.created`...): what `workspaceEvents` subscribers receive."""

    workspace_id: uuid.UUID
    type: str
    node_type: str | None
    node_id: uuid.UUID | None


def on_commit(session: AsyncSession, effect: Effect | Event) -> None:
    """Make `effect` happen once the session's current transaction commits."""
    sync = session.sync_session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    if transaction is None:
        raise RuntimeError("an effect belongs to a transaction: register it after the write it follows")
    sync.info.setdefault(_PENDING, []).append((transaction, effect))


def event(session: AsyncSession, event_type: str, node_type: str | None, node_id: uuid.UUID | None) -> None:
    """Announce `event_type` of a node to the workspace the session's transactions are scoped to."""
    workspace = session.info.get("workspace_id")
    if not workspace:
        raise RuntimeError("workspace events need a tenant session (app.db.engine.Database.tenant)")
    on_commit(session, Event(uuid.UUID(workspace), event_type, node_type, node_id))


_WRITE_EVENTS = {"CREATED": "created", "UPDATED": "updated", "DELETED": "deleted"}


def written(session: AsyncSession, domain: str, outcome: str, node_type: str, node_id: uuid.UUID | None) -> None:
    """The event of one write's outcome (`app.services.batch.Outcome`): CREATED is
    `<domain>.created`, UPDATED `<domain>.updated`, DELETED `<domain>.deleted`; SKIPPED and
    FAILED changed nothing and announce nothing. Mutations and imports write through the same
    functions, which call this."""
    verb = _WRITE_EVENTS.get(outcome)
    if verb is not None:
        event(session, f"{domain}.{verb}", node_type, node_id)


def message(session: AsyncSession, actor: str, *args: str) -> None:
    """Send a Dramatiq message to `actor` once committed: the worker must find what it names."""

    async def send(_: Surroundings) -> None:
        import dramatiq

        await asyncio.to_thread(dramatiq.get_broker().get_actor(actor).send, *args)

    on_commit(session, send)


def credentials_changed(session: AsyncSession) -> None:
    """API keys or memberships change: once committed, every API process looks credentials up
    afresh from its next request on (app.admission)."""

    async def bump(surroundings: Surroundings) -> None:
        from app.admission import credentials_changed as bump_epoch

        await bump_epoch(surroundings.redis, surroundings.settings)

    on_commit(session, bump)


async def commit(session: AsyncSession, surroundings: Surroundings) -> None:
    """Commit the session's transaction, then run what it made due."""
    await session.commit()
    await run(session, surroundings)


async def run(session: AsyncSession, surroundings: Surroundings) -> None:
    """The effects of what the session has committed: its events in one round trip to Redis,
    then the others in the order they were registered."""
    due: list[Effect | Event] = session.info.pop(_DUE, [])
    events = [e for e in due if isinstance(e, Event)]
    steps: list[Effect] = [e for e in due if not isinstance(e, Event)]
    if events:
        steps.insert(0, lambda s: _publish(s.redis, events))
    for step in steps:
        try:
            await step(surroundings)
        except Exception as exc:
            if not outages.is_outage(exc):
                raise
            log.warning("an effect after commit was lost, Redis unreachable: %r", exc)


async def _publish(redis: Redis, events: list[Event]) -> None:
    await publish_events(redis, [(e.workspace_id, e.type, e.node_type, e.node_id) for e in events])


def _pending(session: Session) -> list[tuple[SessionTransaction, Effect | Event]]:
    return session.info.get(_PENDING, [])  # type: ignore[no-any-return]


def _within(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


@sa_event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint released: its effects still wait for the transaction around it
    pending = _pending(session)
    if pending:
        session.info.setdefault(_DUE, []).extend(effect for _, effect in pending)
        pending.clear()


@sa_event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = _pending(session)
    pending[:] = [(t, e) for t, e in pending if not _within(t, previous_transaction)]


@sa_event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    """A transaction closed without a commit (`session.close()`) takes its effects along."""
    if transaction.parent is None and not transaction.nested:
        _pending(session).clear()

