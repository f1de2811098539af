"""Contacts, their activity, the intelligence kept from it, and relationships between any nodes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from app.db.models.base import Base, created_timestamp, primary_key, updated_timestamp


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    full_name: Mapped[str]
    "Primary email, normalised (trimmed, lower-cased)."
    email: Mapped[str | None]
    emails: Mapped[list[str]] = mapped_column(default=list)
    phone: Mapped[str | None]
    title: Mapped[str | None]
    company: Mapped[str | None]
    city: Mapped[str | None]
    state: Mapped[str | None]
    tags: Mapped[list[str]] = mapped_column(default=list)
    contact_type: Mapped[str | None]
    status: Mapped[str | None]
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    remote_id: Mapped[str | None]
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    "Set on the contacts a merge absorbed."
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()
    deleted_at: Mapped[datetime | None]
    "Values of the intelligence-backed sort keys, filled by the listing query that orders by them."
    sort_last_contact_at: Mapped[datetime | None] = query_expression()
    sort_strength: Mapped[float | None] = query_expression()


class ActivityEvent(Base):
    __tablename__ = "activity_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    type: Mapped[str]
    resource_id: Mapped[str]
    occurred_at: Mapped[datetime]
    summary: Mapped[str | None]
    participants: Mapped[list[str]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    "metadata.threadId of messages, kept as a column for the per-thread figures."
    thread_id: Mapped[str | None]
    created_at: Mapped[datetime] = created_timestamp()


class ContactIntelligence(Base):
    """The stored facts of a contact's intelligence; time-dependent figures derive on read."""

    __tablename__ = "contact_intelligence"

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    sent_count: Mapped[int] = mapped_column(default=0)
    received_count: Mapped[int] = mapped_column(default=0)
    first_contact_at: Mapped[datetime | None]
    last_contact_at: Mapped[datetime | None]
    last_sent_at: Mapped[datetime | None]
    last_received_at: Mapped[datetime | None]
    reply_count: Mapped[int] = mapped_column(default=0)
    response_hours_total: Mapped[float] = mapped_column(default=0.0)
    hour_counts: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=lambda: [0] * 24)
    thread_count: Mapped[int] = mapped_column(default=0)


class ContactThread(Base):
    """Per (contact, thread): the replies and their delays, recomputed when the thread changes."""

    __tablename__ = "contact_threads"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    thread_id: Mapped[str] = mapped_column(primary_key=True)
    reply_count: Mapped[int] = mapped_column(default=0)
    response_hours_total: Mapped[float] = mapped_column(default=0.0)


class ConversationParticipant(Base):
    """A contact seen in a thread or calendar event: the source of derived edges."""

    __tablename__ = "conversation_participants"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(primary_key=True)
    conversation: Mapped[str] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    last_seen_at: Mapped[datetime]


class Relationship(Base):
    """A typed, weighted edge between any two nodes, each named by (type name, uuid)."""

    __tablename__ = "relationships"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str]
    source_type: Mapped[str]
    source_id: Mapped[uuid.UUID]
    target_type: Mapped[str]
    target_id: Mapped[uuid.UUID]
    "Set by hand on manual edges; derived edges weigh by their counts and recency on read."
    weight: Mapped[float] = mapped_column(default=0.0)
    shared_thread_count: Mapped[int] = mapped_column(default=0)
    shared_calendar_count: Mapped[int] = mapped_column(default=0)
    last_seen_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(default=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = created_timestamp()
