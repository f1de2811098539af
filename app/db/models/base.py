"""The declarative base and the column types every model shares."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, DateTime, LargeBinary, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # Server defaults (created_at, updated_at) come back through RETURNING, not a second query.
    __mapper_args__ = {"eager_defaults": True}

    type_annotation_map = {
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[str]: ARRAY(Text),
        str: Text,
        bytes: LargeBinary,
    }


def primary_key() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def created_timestamp() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def updated_timestamp() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), onupdate=func.now())
