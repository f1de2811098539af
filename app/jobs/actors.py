"""Dramatiq actors are declared here.

Import this module only through `app.jobs.broker.setup_broker()`: `@dramatiq.actor` binds each
actor to the global broker at import time, so the broker must be set before.
"""

from __future__ import annotations

import dramatiq
import dramatiq.broker
from dramatiq.brokers.redis import RedisBroker

if dramatiq.broker.global_broker is None:
    raise RuntimeError("import app.jobs.actors through app.jobs.broker.setup_broker(settings)")

PING_KEY = "ctxgraph:ping:{token}"
PING_TTL_SECONDS = 60


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=10_000)
def ping(token: str) -> None:
    """Prove that a worker consumes the queue: health checks send one and wait for the key."""
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    broker.client.set(PING_KEY.format(token=token), "pong", ex=PING_TTL_SECONDS)
