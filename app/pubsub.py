"""Live events over Redis pub/sub, so a subscriber on any API process sees changes made by any
process. Published only after the change has committed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis


def workspace_channel(workspace_id: uuid.UUID) -> str:
    return f"ctxgraph:ws:{workspace_id}:events"


async def publish_event(
    redis: Redis, workspace_id: uuid.UUID, event_type: str, node_type: str | None, node_id: uuid.UUID | None
) -> None:
    """`event_type` is `<domain>.<created|updated|deleted|...>`, e.g. `contact.created`."""
    message = {
        "type": event_type,
        "nodeType": node_type,
        "nodeId": str(node_id) if node_id else None,
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    await redis.publish(workspace_channel(workspace_id), json.dumps(message))
