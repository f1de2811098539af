"""Sources: the channels data arrives through."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models.base import Base, created_timestamp, primary_key, updated_timestamp


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str]
    display_name: Mapped[str]
    provider: Mapped[str]
    status: Mapped[str]
    config: Mapped[dict[str, Any]]
    "Fernet token of the JSON credentials; never leaves the service layer decrypted."
    credentials_encrypted: Mapped[bytes | None]
    created_at: Mapped[datetime] = created_timestamp()
    updated_at: Mapped[datetime] = updated_timestamp()
    last_sync_started_at: Mapped[datetime | None]
    last_sync_finished_at: Mapped[datetime | None]
    last_sync_status_message: Mapped[str | None]
