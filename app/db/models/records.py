"""Object types (user-defined schemas), their records, record versions and typed field values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Computed, ForeignKey
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.db.models.base import Base, created_timestamp, primary_key, updated_timestamp


class ObjectType(Base):
    __tablename__ = "object_types"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str]
    display_name: Mapped[str]
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    "[{name, fieldType, label, required, options}], in the order given."
    field_definitions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()


class Record(Base):
    __tablename__ = "records"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    object_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("object_types.id", ondelete="RESTRICT"))
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    remote_id: Mapped[str | None]
    name: Mapped[str]
    display_name: Mapped[str | None]
    fields: Mapped[dict[str, Any]]
    version: Mapped[int]
    "The values of the text-like fields, for full-text search (search_vector is computed from it)."
    search_text: Mapped[str] = deferred(mapped_column())
    search_vector: Mapped[Any] = deferred(mapped_column(TSVECTOR, Computed("", persisted=True)))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()
    deleted_at: Mapped[datetime | None]


class RecordValue(Base):
    """One scalar custom value in a typed, indexable column (see migration 0003 for why)."""

    __tablename__ = "record_values"

    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), primary_key=True)
    field: Mapped[str] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    object_type_id: Mapped[uuid.UUID]
    num: Mapped[float | None]
    at: Mapped[datetime | None]
    txt: Mapped[str | None]


class RecordVersion(Base):
    __tablename__ = "record_versions"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"))
    version: Mapped[int]
    "created, updated or reverted."
    action: Mapped[str]
    name: Mapped[str]
    display_name: Mapped[str | None]
    fields: Mapped[dict[str, Any]]
    changed_fields: Mapped[list[str]]
    changed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_timestamp()
