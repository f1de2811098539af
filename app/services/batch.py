"""What a bulk write (an import batch) reports for each of its items.

Domain services expose `import_*` functions that take a batch of raw items and return one
`ItemOutcome` per item, in order: the jobs machinery stores them as `Job.items` and counts them.
One bad item fails only itself.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Outcome = Literal["CREATED", "UPDATED", "SKIPPED", "DELETED", "FAILED"]


@dataclass(frozen=True)
class ItemOutcome:
    index: int
    outcome: Outcome
    remote_id: str | None = None
    "The node the item became (type name, uuid), when it became one."
    node: tuple[str, uuid.UUID] | None = None
    error: str | None = None


def json_text(value: Any) -> str:
    """JSON for a bulk statement's parameter (rows as one jsonb value) or a stored payload:
    orjson (UUIDs and datetimes included); the standard library for what orjson refuses
    (integers beyond 64 bits, in custom fields)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=str)
