"""Subscriptions (graphql-transport-ws), fed by Redis pub/sub so that a subscriber on any API
process hears changes made by any process.

A subscription holds no database connection while it waits: it reads with the operation's
session, then `release()`s it after each event (the event's fields are resolved by then).

When Redis drops and comes back, the events published meanwhile are lost (`app.pubsub.Gap`): a
job's subscriber reads the job again and goes on from its current state (completing if it
ended meanwhile); a workspace's events cannot be read again, so that subscription ends with a
SERVICE_UNAVAILABLE error telling the client to subscribe again and refetch what it shows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry

from app.pubsub import Gap, hub, job_channel, workspace_channel
from app.services import ids
from app.services import jobs as job_service
from app.services.errors import NotFound, ServiceError
from schema.context import Info
from schema.fanout import deliver, shared
from schema.jobs import Job
from schema.node import Node, resolve_node, uuid_of

"The read scope an event's domain (its type's prefix) needs; events of other domains are not sent."
EVENT_SCOPES = {
    "contact": "contacts:read", "activity": "contacts:read", "relationship": "contacts:read",
    "record": "records:read", "objectType": "records:read", "document": "documents:read",
    "source": "sources:read", "job": "jobs:read",
}


class EventsLost(ServiceError):
    code = "SERVICE_UNAVAILABLE"


@strawberry.type
class WorkspaceEvent:
    type: str
    node: Node | None
    occurred_at: datetime


def _shared_job(snapshot: dict[str, Any]) -> Job:
    """One Job per published snapshot for every subscriber of the job in this process, executed
    once per distinct operation and sent by `deliver` (see schema.fanout). No per-subscriber read: each subscriber's
    access to the job was checked when it subscribed, and the snapshot is the committed state."""
    return shared(Job.of_snapshot(snapshot))


async def _read_job(info: Info, job_id: uuid.UUID | None) -> Job:
    """The job's committed state, as the subscriber may see it."""
    ctx = info.context
    async with ctx.db() as s:
        row = await job_service.get_job(s, ctx.principal, job_id)
    await ctx.release()
    if row is None:
        raise NotFound("Job not found")
    return Job.of(row)


def _wanted(event_type: str, types: list[str] | None) -> bool:
    """`types` holds exact types (`contact.created`) or a domain's all (`contact.*`)."""
    if not types:
        return True
    domain = event_type.partition(".")[0]
    return event_type in types or f"{domain}.*" in types


@strawberry.type
class Subscriptions:
    @strawberry.subscription(
        description="Emits the job at once, then on every progress or status change; completes after a terminal "
        "status. Changes made while the server could not reach its event bus are sent (as the job's current "
        "state) once it can."
    )
    async def job_progress(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
        ctx = info.context
        ctx.principal.require(job_service.READ)
        job_id = uuid_of(id, "Job")
        async with hub(ctx.services.redis).subscribe(job_channel(job_id or uuid.UUID(int=0))) as subscriber:
            job = await _read_job(info, job_id)
            yield job
            await ctx.release()
            while job.status.value not in job_service.TERMINAL:
                try:
                    newer = (await subscriber.get()).derive("job", _shared_job)
                except Gap:  # Redis came back: the events of the outage are lost, the row is not
                    newer = await _read_job(info, job_id)
                if newer.updated_at <= job.updated_at:
                    continue  # published before the state already sent
                job = newer
                if not await deliver(job):
                    yield job
                await ctx.release()

    @strawberry.subscription(
        description="Created / updated / deleted events of the workspace, for live views. Ends with a "
        "SERVICE_UNAVAILABLE error when events may have been lost (the server lost its event bus for a while): "
        "subscribe again and refetch what the view shows."
    )
    async def workspace_events(self, info: Info, types: list[str] | None = None) -> AsyncGenerator[WorkspaceEvent, None]:
        ctx = info.context
        workspace_id = ctx.principal.require_workspace()
        async with hub(ctx.services.redis).subscribe(workspace_channel(workspace_id)) as subscriber:
            while True:
                try:
                    event = (await subscriber.get()).data
                except Gap as gap:
                    raise EventsLost(
                        "Events were lost while the event bus was unreachable: subscribe again and refetch"
                    ) from gap
                event_type = str(event.get("type", ""))
                scope = EVENT_SCOPES.get(event_type.partition(".")[0])
                if scope is None or not ctx.principal.can(scope) or not _wanted(event_type, types):
                    continue
                node = None
                if event.get("nodeType") and event.get("nodeId"):
                    node = await resolve_node(info, ids.encode(event["nodeType"], uuid.UUID(event["nodeId"])))
                yield WorkspaceEvent(type=event_type, node=node, occurred_at=datetime.fromisoformat(event["occurredAt"]))
                await ctx.release()
