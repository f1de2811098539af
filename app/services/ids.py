"""Opaque global IDs: base64 of `Type:uuid`. Services decode them where a rule needs the type
(filters, references to any node), so the codec lives here rather than in the schema."""

from __future__ import annotations

import base64
import binascii
import uuid

from app.services.errors import BadInput


def encode(type_name: str, id_: uuid.UUID) -> str:
    return base64.b64encode(f"{type_name}:{id_}".encode()).decode()


def decode(global_id: str) -> tuple[str, uuid.UUID]:
    try:
        type_name, raw = base64.b64decode(global_id.encode(), validate=True).decode().split(":", 1)
        return type_name, uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"Malformed id: {global_id!r}") from exc


def decode_as(global_id: str, type_name: str) -> uuid.UUID | None:
    """The uuid of a well-formed id of `type_name`; None when it names another type."""
    found, id_ = decode(global_id)
    return id_ if found == type_name else None
