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

from starlette.websockets import WebSocketDisconnect
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage, SubscribeMessage

from app import ratelimit
from app.pubsub import api_key_channel, hub
from app.services import auth
from app.services.errors import ServiceError
from schema.context import Context
from schema.fanout import streaming_to

log = logging.getLogger("ctxgraph.websocket")
FORBIDDEN = 4403
TOO_MANY = 4429


def credentials(params: Any) -> dict[str, Any]:
    """The `authenticate` arguments a connection_init payload carries."""
    params = params if isinstance(params, dict) else {}
    return {"authorization": params.get("authorization"), "api_key": params.get("apiKey"),
            "workspace": params.get("workspaceId")}


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
        if await self._over_limit(None) is not None:
            await self.websocket.close(code=TOO_MANY, reason="Too many requests")
            return
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._guard is None:
            self._guard = asyncio.create_task(self._guard_socket(), name="ctxgraph-ws-guard")
            self._guard.add_done_callback(self._task_done)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged:
            retry_after = await self._over_limit(self.context.principal.rate_key)
            if retry_after is not None:
                limit = self.context.services.settings.rate_limit_per_minute
                await self.send_message({"id": message["id"], "type": "error", "payload": [{
                    "message": f"Rate limit of {limit} requests a minute exceeded",
                    "extensions": {"code": "RATE_LIMITED", "retryAfter": retry_after},
                }]})
                return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
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
        watchers: list[Coroutine[Any, Any, str]] = [
            self._expiry(), self._recheck(), self._revocation(), self._keep_alive(),
        ]
        tasks = [asyncio.create_task(w) for w in watchers]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            reason = done.pop().result()
        except Exception:  # noqa: BLE001 - the socket went away under a ping: nothing left to guard
            log.debug("socket guard stopped", exc_info=True)
            return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self.websocket.close(code=FORBIDDEN, reason=reason)

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
                await changes.get()

    async def _keep_alive(self) -> str:
        interval = self.view.services.settings.ws_keepalive_seconds  # type: ignore[attr-defined]
        while True:
            await asyncio.sleep(interval)
            await self.send_message({"type": "ping"})
