"""graphql-transport-ws as Strawberry speaks it, plus what a long-lived socket needs.

A socket is authenticated once, in connection_init (`GraphQLView.on_ws_connect`), but may stay
open for hours, so once acknowledged it is guarded: it closes with 4403 when its credential
expires (an access token's `exp`, an API key's `expiresAt`) or stops authenticating (a revoked
or rotated API key, a removed member). A revocation is announced over Redis, so every API
process closes its sockets at once; the credential is also re-authenticated every
`ws_auth_recheck_seconds`, which bounds the delay should that announcement be lost. Meanwhile
the server pings every `ws_keepalive_seconds`, as the protocol allows, so that idle sockets stay
open through proxies (and answers the client's pings, as Strawberry does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage, SubscribeMessage

from app import outages, ratelimit
from app.pubsub import Gap, api_key_channel, hub
from app.services import auth
from app.services.errors import ServiceError
from schema.context import Context
from schema.extensions import parse_document, request_error_code
from schema.fanout import streaming_to

log = logging.getLogger("ctxgraph.websocket")
INVALID_MESSAGE = 4400
FORBIDDEN = 4403
TOO_MANY = 4429
UNAVAILABLE = "Service unavailable; try again later"


def credentials(params: Any) -> dict[str, Any]:
    """The `authenticate` arguments a connection_init payload carries: authorization, apiKey,
    workspaceId."""
    named = {str(k).lower(): v for k, v in params.items()} if isinstance(params, dict) else {}

    def text(*names: str) -> str | None:  # anything but a string is no credential
        value = next((named[n] for n in names if n in named), None)
        return value if isinstance(value, str) else None

    # Any case, and the HTTP headers' names too: GraphiQL sends its headers editor's JSON as it is typed.
    return {"authorization": text("authorization"), "api_key": text("apikey", "x-api-key"),
            "workspace": text("workspaceid", "x-workspace-id")}


def _subscribe_problem(message: Any) -> str | None:
    """Why a subscribe message is not one graphql-transport-ws defines, or None."""
    payload = message.get("payload")
    if not isinstance(message.get("id"), str) or not message["id"]:
        return "A subscribe message needs a string id"
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "A subscribe message's payload needs a string query"
    if not isinstance(payload.get("variables") or {}, dict):
        return "A subscribe message's variables must be an object"
    if not isinstance(payload.get("operationName") or "", str):
        return "A subscribe message's operationName must be a string"
    return None


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    _guard: asyncio.Task[None] | None = None

    async def _over_limit(self, identity: str | None) -> int | None:
        """Seconds to wait when `identity` (else the client's address) is over the rate limit:
        a socket's operations count like HTTP requests, or it would be a way around the limit."""
        services = self.context.services
        client = self.context.request.client
        key = identity or f"ip:{client.host if client else 'unknown'}"
        return await ratelimit.hit(services.redis, services.settings.redis_namespace, key, services.settings.rate_limit_per_minute)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            if await self._over_limit(None) is not None:
                await self.websocket.close(code=TOO_MANY, reason="Too many requests")
                return
            await super().handle_connection_init(message)
        except Exception as exc:
            if not outages.is_outage(exc):
                raise
            log.warning("socket refused, service unavailable: %r", exc)
            await self.websocket.close(code=outages.TRY_AGAIN_LATER, reason=UNAVAILABLE)
            return
        if self.connection_acknowledged and self._guard is None:
            self._guard = asyncio.create_task(self._guard_socket(), name="ctxgraph-ws-guard")
            self._guard.add_done_callback(self._task_done)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        problem = _subscribe_problem(message)
        if problem is not None:  # graphql-transport-ws: a message that is not the protocol's closes the socket
            await self.websocket.close(code=INVALID_MESSAGE, reason=problem)
            return
        if self.connection_acknowledged:
            try:
                retry_after = await self._over_limit(self.context.principal.rate_key)
            except Exception as exc:
                if not outages.is_outage(exc):
                    raise
                await self.send_message({"id": message["id"], "type": "error", "payload": [{
                    "message": outages.MESSAGE,
                    "extensions": {"code": outages.CODE, "retryAfter": outages.RETRY_AFTER_SECONDS},
                }]})
                return
            if retry_after is not None:
                limit = self.context.services.settings.rate_limit_per_minute
                await self.send_message({"id": message["id"], "type": "error", "payload": [{
                    "message": f"Rate limit of {limit} requests a minute exceeded",
                    "extensions": {"code": "RATE_LIMITED", "retryAfter": retry_after},
                }]})
                return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        try:  # cached: Strawberry's parse hook finds it done
            await parse_document(operation.query, self.context.services.settings)
        except GraphQLError as refusal:  # over HTTP a response of errors; over a socket, its `error` message
            refusal.extensions = {**(refusal.extensions or {}), "code": request_error_code(refusal)}
            self.operations.pop(operation.id, None)
            await self.send_message({"id": operation.id, "type": "error", "payload": [refusal.formatted]})
            return
        streaming_to(operation, self._send_text)  # shared events skip the per-result path
        await super().run_operation(operation)

    async def _send_text(self, text: str) -> None:
        """A message to a socket that went away is dropped: its handler is cancelling the operations."""
        try:
            await self.context.request.send_text(text)
        except WebSocketDisconnect:
            pass

    async def shutdown(self) -> None:
        if self._guard is not None and self._guard is not asyncio.current_task():
            self._guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._guard
        await super().shutdown()

    async def _guard_socket(self) -> None:
        watchers: list[tuple[Coroutine[Any, Any, str], int]] = [
            (self._expiry(), FORBIDDEN), (self._recheck(), FORBIDDEN), (self._revocation(), FORBIDDEN),
            (self._keep_alive(), FORBIDDEN), (self._redis_outage(), outages.TRY_AGAIN_LATER),
        ]
        codes = {asyncio.create_task(w): code for w, code in watchers}
        tasks = list(codes)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            reason, code = finished.result(), codes[finished]
        except Exception:  # noqa: BLE001 - the socket went away under a ping: nothing left to guard
            log.debug("socket guard stopped", exc_info=True)
            return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self.websocket.close(code=code, reason=reason)

    async def _still_valid(self) -> str | None:
        """None while the connection's credential authenticates as the same principal."""
        services = self.view.services  # type: ignore[attr-defined]
        try:
            params = credentials(self.context.connection_params)
            principal = await auth.authenticate(services.db, services.settings, **params)
        except ServiceError as exc:
            return exc.message
        return None if principal == self.context.principal else "Credentials changed; reconnect"

    async def _expiry(self) -> str:
        expires_at = self.context.credential_expires_at  # read when the socket authenticated
        if expires_at is None:
            await asyncio.Future()  # never
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
        return "Credentials expired"

    async def _recheck(self) -> str:
        interval = self.view.services.settings.ws_auth_recheck_seconds  # type: ignore[attr-defined]
        while True:
            await asyncio.sleep(interval)
            try:
                reason = await self._still_valid()
            except Exception:  # noqa: BLE001 - the database is unreachable: not the client's fault, try again
                log.warning("could not re-authenticate a socket", exc_info=True)
                continue
            if reason is not None:
                return reason

    async def _revocation(self) -> str:
        key_id = self.context.principal.api_key_id
        if key_id is None:
            await asyncio.Future()  # only API keys are revoked
        redis = self.view.services.redis  # type: ignore[attr-defined]
        async with hub(redis).subscribe(api_key_channel(key_id)) as changes:  # type: ignore[arg-type]
            while True:  # first once more: the key may have changed before the subscription was live
                reason = await self._still_valid()
                if reason is not None:
                    return reason
                with contextlib.suppress(Gap):  # Redis came back: an announcement may have been lost
                    await changes.get()

    async def _redis_outage(self) -> str:
        """Past `ws_redis_outage_seconds` without Redis, the socket's subscriptions have missed
        events for long: closing with 1013 makes clients reconnect and subscribe afresh (a
        subscription's first message is the current state) once the server can serve them."""
        services = self.view.services  # type: ignore[attr-defined]
        await hub(services.redis).unreachable_for(services.settings.ws_redis_outage_seconds)
        return UNAVAILABLE

    async def _keep_alive(self) -> str:
        interval = self.view.services.settings.ws_keepalive_seconds  # type: ignore[attr-defined]
        while True:
            await asyncio.sleep(interval)
            await self.send_message({"type": "ping"})
