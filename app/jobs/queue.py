"""Sending job messages from outside a transaction (the reaper). A new job's message is an effect
of the transaction that stores it (`app.services.jobs.started`): sent once its row has committed,
or the worker may look before the row exists."""

from __future__ import annotations

import asyncio
import uuid

import dramatiq

from app.services.jobs import JOB_ACTOR


def send_job(job_id: uuid.UUID) -> None:
    dramatiq.get_broker().get_actor(JOB_ACTOR).send(str(job_id))


async def enqueue(job_id: uuid.UUID) -> None:
    """From async code: the broker's Redis client is synchronous."""
    await asyncio.to_thread(send_job, job_id)
