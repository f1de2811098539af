"""Documents, their versions, search chunks and links to other nodes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Computed, ForeignKey
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.db.models.base import Base, created_timestamp, primary_key, updated_timestamp


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    title: Mapped[str]
    content_type: Mapped[str]
    url: Mapped[str | None]
    "Extracted plain text; unset until a url document is fetched."
    content: Mapped[str | None] = deferred(mapped_column())
    content_hash: Mapped[str | None]
    status: Mapped[str]
    "Why processing FAILED."
    error: Mapped[str | None]
    tags: Mapped[list[str]]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    version: Mapped[int]
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    remote_id: Mapped[str | None]
    "A contact's id; no foreign key, the contacts domain is another migration branch."
    author_id: Mapped[uuid.UUID | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()
    deleted_at: Mapped[datetime | None]


class DocumentVersion(Base):
    __tablename__ = "document_versions"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    version: Mapped[int]
    title: Mapped[str]
    url: Mapped[str | None]
    content: Mapped[str | None] = deferred(mapped_column())
    content_hash: Mapped[str | None]
    created_at: Mapped[datetime] = created_timestamp()


class DocumentChunk(Base):
    __tablename__ = "document_chunks"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int]
    content: Mapped[str]
    heading: Mapped[str]
    search_vector: Mapped[Any] = deferred(mapped_column(TSVECTOR, Computed("", persisted=True)))


class DocumentLink(Base):
    __tablename__ = "document_links"

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    node_type: Mapped[str] = mapped_column(primary_key=True)
    node_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = created_timestamp()
