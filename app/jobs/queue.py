"""Sending job messages. The message carries the job id only; send it after the job's row has
committed, or the worker may look before the row exists."""

from __future__ import annotations

import asyncio
import uuid

import dramatiq

JOB_ACTOR = "run_job"


def send_job(job_id: uuid.UUID) -> None:
    dramatiq.get_broker().get_actor(JOB_ACTOR).send(str(job_id))


async def enqueue(job_id: uuid.UUID) -> None:
    """From async code: the broker's Redis client is synchronous."""
    await asyncio.to_thread(send_job, job_id)


async def fetch_documents(document_ids: list[uuid.UUID], workspace_id: uuid.UUID) -> None:
    """Documents imported with a url and no content wait for `app.jobs.documents.fetch_document`."""

    def send() -> None:
        actor = dramatiq.get_broker().get_actor("fetch_document")
        for document_id in document_ids:
            actor.send(str(document_id), str(workspace_id))

    if document_ids:
        await asyncio.to_thread(send)
