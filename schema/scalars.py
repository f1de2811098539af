"""Scalars of the contract: DateTime (ISO 8601, UTC, `Z`), JSON, Upload."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("DateTime must carry a time zone (e.g. a trailing Z)")
    return parsed.astimezone(UTC)


DateTime = strawberry.scalar(
    name="DateTime",
    description='ISO 8601 in UTC, e.g. "2026-05-06T14:23:00Z"',
    serialize=_serialize,
    parse_value=_parse,
)

SCALAR_MAP = {datetime: DateTime}

__all__ = ["JSON", "SCALAR_MAP", "DateTime", "Upload"]
