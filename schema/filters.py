"""Filter inputs shared by every entity; `app.services.filters` compiles them to SQL."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from app.services.filters import MAX_LIST

IN = f"Any of these values (at most {MAX_LIST:,})."


@strawberry.enum
class SortDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input(description="contains and startsWith ignore case; eq, neq and in are exact.")
class StringFilter:
    eq: str | None = None
    neq: str | None = None
    in_: list[str] | None = strawberry.field(name="in", default=None, description=IN)
    contains: str | None = None
    starts_with: str | None = None
    is_null: bool | None = None


@strawberry.input
class FloatFilter:
    eq: float | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    is_null: bool | None = None


@strawberry.input
class DateTimeFilter:
    eq: datetime | None = None
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None
    is_null: bool | None = None


@strawberry.input
class IDFilter:
    eq: strawberry.ID | None = None
    in_: list[strawberry.ID] | None = strawberry.field(name="in", default=None, description=IN)
    is_null: bool | None = None
