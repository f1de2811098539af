"""Dramatiq actors are declared here.

Import this module only through `app.jobs.broker.setup_broker()`: `@dramatiq.actor` binds each
actor to the global broker at import time, so the broker must be set before.
"""

from __future__ import annotations

import uuid

import dramatiq
import dramatiq.broker
from dramatiq.brokers.redis import RedisBroker

from app.jobs import queue, runtime

if dramatiq.broker.global_broker is None:
    raise RuntimeError("import app.jobs.actors through app.jobs.broker.setup_broker(settings)")

PING_KEY = "ctxgraph:ping:{token}"
PING_TTL_SECONDS = 60
# Dramatiq's time limit interrupts the waiting thread, not the job's coroutine: jobs bound their
# own work (batches, statement timeout), so the limit is only a backstop.
JOB_TIME_LIMIT_MS = 24 * 3600 * 1000


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=10_000)
def ping(token: str) -> None:
    """Prove that a worker consumes the queue: health checks send one and wait for the key."""
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    broker.client.set(PING_KEY.format(token=token), "pong", ex=PING_TTL_SECONDS)


@dramatiq.actor(
    actor_name=queue.JOB_ACTOR, queue_name="jobs", max_retries=20, min_backoff=1_000, max_backoff=300_000,
    time_limit=JOB_TIME_LIMIT_MS,
)
def run_job(job_id: str) -> None:
    """One run of a job (app.jobs.runner); the job row bounds the attempts, not this retry count."""
    from app.jobs.runner import run_job as run

    rt = runtime.current()
    rt.run(run(rt, uuid.UUID(job_id)))


from app.jobs import documents as _documents  # noqa: E402,F401  (declares fetch_document)


from app.jobs import documents  # noqa: E402, F401 - declares fetch_document, once the broker is set
