"""Jobs, their stored payloads and per-item outcomes (see migrations/versions/0004_jobs.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models.base import Base, created_timestamp, primary_key, updated_timestamp


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str]
    status: Mapped[str]
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    "Who the job acts for: the user or API key that started it."
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    retry_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    target: Mapped[str | None]
    adapter: Mapped[str | None]
    object_type_id: Mapped[uuid.UUID | None]
    "fieldMapping, the item indexes of a retry, the file of a sync."
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    "The job whose stored payload this one reads (itself, or the original of a retry)."
    payload_job_id: Mapped[uuid.UUID | None]
    payload_format: Mapped[str | None]
    total: Mapped[int | None]
    processed: Mapped[int] = mapped_column(default=0)
    successful: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    "created / updated / skipped / deleted / failed."
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    "How many of the job's items are done: a resumed run starts there."
    checkpoint: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    "Runs started (redeliveries included): bounded by settings.job_max_attempts."
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None]
    message_id: Mapped[str | None]
    enqueued_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobPayloadChunk(Base):
    __tablename__ = "job_payload_chunks"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    data: Mapped[bytes]


class JobItemBatch(Base):
    """The outcomes of one batch of a job's items, one row per batch, not per item (see
    migrations/versions/0006_import_throughput.py)."""

    __tablename__ = "job_item_batches"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    first_idx: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    last_idx: Mapped[int]
    "The statuses present in the batch: a read by status skips the batches without it."
    statuses: Mapped[list[str]]
    "[{i: index, r: remoteId, s: status, o: outcome, t: node type, n: node id, e: error}], nulls left out."
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


@dataclass(frozen=True)
class JobItem:
    """One item's outcome, as read from its batch."""

    idx: int
    remote_id: str | None
    status: str
    node_type: str | None
    node_id: uuid.UUID | None
    error: str | None
