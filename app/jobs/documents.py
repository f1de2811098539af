"""Fetching url documents: PENDING -> PROCESSING -> READY or FAILED (with the reason).

Only http(s), bounded in time and size, and only text content types that `app.services.extract`
understands. Declared by `app.jobs.actors` (after the broker is set up).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import dramatiq
import dramatiq.broker
import httpx

from app import outbound
from app.jobs import runtime
from app.jobs.runtime import Runtime
from app.outbound import ForbiddenDestination
from app.services import documents as service
from app.services import effects
from app.services.extract import CONTENT_TYPES

if dramatiq.broker.global_broker is None:
    raise RuntimeError("import app.jobs.documents through app.jobs.broker.setup_broker(settings)")

log = logging.getLogger("ctxgraph.jobs")


@dataclass
class FetchLimits:
    timeout_seconds: float = 20.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5


LIMITS = FetchLimits()


class FetchError(Exception):
    """Why a url could not be turned into a document; stored as the document's error."""


async def download(url: str, limits: FetchLimits, allow_private: bool = False) -> tuple[str, str]:
    """(text, content type) of `url`, within `limits`."""
    deadline = time.monotonic() + limits.timeout_seconds
    try:
        async with outbound.async_client(
            allow_private, follow_redirects=True, max_redirects=limits.max_redirects, timeout=limits.timeout_seconds,
            headers={"user-agent": "ctxgraph-document-fetcher"},
        ) as client, client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} from {url}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in CONTENT_TYPES:
                raise FetchError(f"Content type {content_type or '(none)'} is not supported "
                                 f"(allowed: {', '.join(CONTENT_TYPES)})")
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > limits.max_bytes:
                raise FetchError(f"The content is larger than {limits.max_bytes} bytes")
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > limits.max_bytes:
                    raise FetchError(f"The content is larger than {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("deadline")
            return body.decode(response.encoding or "utf-8", errors="replace"), content_type
    except httpx.TimeoutException:
        raise FetchError(f"Timed out after {limits.timeout_seconds:g} s") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"More than {limits.max_redirects} redirects") from None
    except ForbiddenDestination as exc:
        raise FetchError(f"Refused to fetch {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"Could not fetch {url}: {type(exc).__name__}") from None


async def fetch(rt: Runtime, document_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
    async with rt.db.tenant(workspace_id) as s:
        url = await service.begin_fetch(s, workspace_id, document_id)
        await effects.commit(s, rt)
    if url is None:
        return
    body = content_type = error = None
    try:
        body, content_type = await download(url, LIMITS, rt.settings.fetch_private_networks)
    except FetchError as exc:
        error = str(exc)
    async with rt.db.tenant(workspace_id) as s:
        document = await service.finish_fetch(s, workspace_id, document_id, body=body, content_type=content_type,
                                              error=error)
        await effects.commit(s, rt)  # announces document.updated
    if document is not None:
        log.info("document %s fetched: %s", document_id, document.status)


@dramatiq.actor(actor_name=service.FETCH_ACTOR, queue_name="documents", max_retries=0, time_limit=10 * 60 * 1000)
def fetch_document(document_id: str, workspace_id: str) -> None:
    rt = runtime.current()
    rt.run(fetch(rt, uuid.UUID(document_id), uuid.UUID(workspace_id)))
