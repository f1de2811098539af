"""Subscription fan-out: one GraphQL execution and one JSON encoding per event and distinct
operation, not per subscriber.

A thousand sockets following one job receive the same event; graphql-core would complete the
same selection on the same object a thousand times. A subscription marks the payload it yields
to every subscriber as `shared()`; `FanOutExecutor` then executes each distinct (operation,
variables, principal) once per payload and hands every subscriber that same result, whose
`data` is encoded once too (`encoded_data`). The principal is part of the key, so a result
never crosses identities; a result with errors is still encoded per subscriber (errors are
classified and masked per request). Everything cached lives exactly as long as the payload.

On a socket, a shared event need not take the per-result path either (graphql-core's response
stream, Strawberry's extensions and result handling, its message encoding, for every socket):
the subscription hands it to `deliver`, which sends the operation's `next` message, the shared
JSON under the operation's own id, on the socket, and yields only what `deliver` declined (a
result with errors). The socket handler tells `deliver` which operation its task runs
(`streaming_to`); the subscription's `complete` is still Strawberry's, after it returns.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import ExecutionResult, OperationType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation

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


class _Stream:
    """A socket operation's way to its client: its `next` message's beginning, the socket's
    `send_text`, and the operation's subscription executor once it has one."""

    def __init__(self, operation: Operation[Any, Any], send_text: Callable[[str], Awaitable[None]]) -> None:
        self.operation = operation
        self.send_text = send_text
        self.next_prefix = f'{{"id":{json.dumps(operation.id)},"type":"next","payload":{{"data":'
        self.executor: FanOutExecutor | None = None


_stream: ContextVar[_Stream | None] = ContextVar("ctxgraph_stream", default=None)


def streaming_to(operation: Operation[Any, Any], send_text: Callable[[str], Awaitable[None]]) -> None:
    """Called in a socket operation's task before it executes: `deliver` may then send its
    results with `send_text` (the socket's)."""
    _stream.set(_Stream(operation, send_text))


async def deliver(payload: Any) -> bool:
    """Sends the current socket operation the `next` message of a `shared()` payload's result,
    encoded once for all; False when the subscription must yield the payload instead: not on a
    socket, or a result with errors (Strawberry classifies and masks them per operation)."""
    stream = _stream.get()
    entry = _entry_of(payload)
    if stream is None or stream.executor is None or entry is None:
        return False
    result = stream.executor.shared_result(entry, payload)
    if isinstance(result, asyncio.Future):
        result = await asyncio.shield(result)  # shared: one subscriber's cancellation must not cancel the others'
    text = encoded_data(result.data)
    if text is None or stream.operation.completed:
        return False
    await stream.send_text(f"{stream.next_prefix}{text}}}}}")
    return True


def _entry_of(payload: Any) -> _Shared | None:
    entry = _by_payload.get(id(payload))
    return entry if entry is not None and entry.payload() is payload else None


class FanOutExecutor(StrawberryGraphQLCoreExecutionContext):
    """Shares the per-event execution of a subscription among the subscribers of one payload."""

    _share_key: _Key | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        subscription = self.operation.operation is OperationType.SUBSCRIPTION
        stream = _stream.get()
        if subscription and stream is not None and stream.executor is None:
            stream.executor = self  # this operation's events: see deliver
        entry = _entry_of(payload)
        if entry is None or not subscription:
            return super().build_per_event_executor(payload)
        return _Done(self.shared_result(entry, payload))

    def shared_result(self, entry: _Shared, payload: Any) -> ExecutionResult | asyncio.Future[ExecutionResult]:
        """The result of this operation's selection on `payload`, computed once per distinct key."""
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
        return result  # type: ignore[no-any-return]


def _remember(entry: _Shared, result: ExecutionResult | asyncio.Future[ExecutionResult]) -> None:
    """Registers an error-free result's data for `encoded_data`."""
    if isinstance(result, asyncio.Future):
        if result.cancelled() or result.exception() is not None:
            return
        result = result.result()
    if not result.errors and result.data is not None and entry.payload() is not None:
        entry.encoded[id(result.data)] = (result.data, "")
        _by_data[id(result.data)] = entry
