"""Subscription fan-out: one GraphQL execution and one JSON encoding per event and distinct
operation, not per subscriber.

A thousand sockets following one job receive the same event; graphql-core would complete the
same selection on the same object a thousand times. A subscription marks the payload it yields
to every subscriber as `shared()`; `FanOutExecutor` then executes each distinct (operation,
variables, principal) once per payload and hands every subscriber that same result, whose
`data` the view encodes once too (`encoded_data`). The principal is part of the key, so a
result never crosses identities; a result with errors is still encoded per subscriber (errors
are classified and masked per request). Everything cached lives exactly as long as the payload.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import ExecutionResult, OperationType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

T = TypeVar("T")


@dataclass
class _Shared:
    """What one shared payload's subscribers have in common."""

    payload: weakref.ref[Any]
    results: dict[_Key, Any] = field(default_factory=dict)
    encoded: dict[int, tuple[Any, str]] = field(default_factory=dict)
    "JSON of each shared result's `data`, by its id (the data is held, so the id stays unique)."


_by_payload: dict[int, _Shared] = {}
_by_data: dict[int, _Shared] = {}


def _forget(payload_id: int) -> None:
    entry = _by_payload.pop(payload_id, None)
    if entry is not None:
        for data_id in entry.encoded:
            _by_data.pop(data_id, None)


def shared(payload: T) -> T:
    """Marks an event payload yielded to many subscribers: its results are computed once."""
    key = id(payload)
    found = _by_payload.get(key)
    if found is None or found.payload() is not payload:
        _by_payload[key] = _Shared(weakref.ref(payload, lambda _: _forget(key)))
    return payload


def encoded_data(data: Any) -> str | None:
    """The JSON of a shared result's `data`, encoded once; None for any other data."""
    entry = _by_data.get(id(data))
    if entry is None:
        return None
    held, text = entry.encoded[id(data)]
    if held is not data:
        return None
    if not text:
        text = json.dumps(data, separators=(",", ":"))
        entry.encoded[id(data)] = (data, text)
    return text


class _Key:
    """(operation, variables, principal), hashed once per subscription rather than per event and
    interned (`_keys`), so that subscribers of one operation find their result by identity."""

    __slots__ = ("__weakref__", "_hash", "parts")

    def __init__(self, *parts: Any) -> None:
        self.parts = parts
        self._hash = hash(parts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _Key) and self._hash == other._hash and self.parts == other.parts)


_keys: weakref.WeakValueDictionary[_Key, _Key] = weakref.WeakValueDictionary()


class _Done:
    """Stands in for a per-event executor whose result is already known."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


class FanOutExecutor(StrawberryGraphQLCoreExecutionContext):
    """Shares the per-event execution of a subscription among the subscribers of one payload."""

    _share_key: _Key | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        entry = _by_payload.get(id(payload))
        subscription = self.operation.operation is OperationType.SUBSCRIPTION
        if entry is None or entry.payload() is not payload or not subscription:
            return super().build_per_event_executor(payload)
        key = self._share_key
        if key is None:
            variables = json.dumps(self.variable_values.coerced, sort_keys=True, default=repr)
            key = _Key(self.operation, variables, getattr(self.context_value, "principal", None))
            key = self._share_key = _keys.setdefault(key, key)
        result = entry.results.get(key)
        if result is None:
            result = super().build_per_event_executor(payload).execute_operation(False)
            if self.is_awaitable(result):
                result = asyncio.ensure_future(result)
                result.add_done_callback(lambda done: _remember(entry, done))
            else:
                _remember(entry, result)
            entry.results[key] = result
        return _Done(result)


def _remember(entry: _Shared, result: ExecutionResult | asyncio.Future[ExecutionResult]) -> None:
    """Registers an error-free result's data for `encoded_data`."""
    if isinstance(result, asyncio.Future):
        if result.cancelled() or result.exception() is not None:
            return
        result = result.result()
    if not result.errors and result.data is not None and entry.payload() is not None:
        entry.encoded[id(result.data)] = (result.data, "")
        _by_data[id(result.data)] = entry
