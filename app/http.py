"""The Starlette app: GraphQL at /graphql (HTTP and graphql-transport-ws), health, metrics.

Requests to /graphql pass the `Gate` first (request id, body limit, CSRF, authentication, rate
limit), then the Strawberry view, which speaks GraphQL over HTTP to the letter: it negotiates
`application/graphql-response+json` (4xx for request errors) or `application/json` (200).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from app import outages
from app.admission import Admission
from app.config import Settings
from app.db.engine import Database
from app.jobs.broker import setup_broker
from app.pubsub import close_hub
from app.security import Vault
from app.services import auth
from app.services.errors import RateLimited, ServiceError
from app.websocket import GuardedTransportWSHandler, credentials
from schema import schema
from schema.context import Context, Services
from schema.scalars import UnacceptableJson, read_json

log = logging.getLogger("ctxgraph.http")

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
GRAPHIQL = Path(__file__).parent / "graphiql"
GRAPHIQL_PAGE = (GRAPHIQL / "index.html").read_text()
GRAPHIQL_CSP = ("default-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# What a page on a CORS origin may send: the credentials, the workspace, and the headers that
# mark a request as preflighted (Apollo's included).
CORS_REQUEST_HEADERS = ("authorization", "content-type", "x-api-key", "x-workspace-id", "x-request-id",
                        "graphql-require-preflight", "apollo-require-preflight", "x-apollo-operation-name")
PREFLIGHT_HEADERS = (b"graphql-require-preflight", b"apollo-require-preflight", b"x-apollo-operation-name")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

REQUESTS = Counter("ctxgraph_http_requests_total", "GraphQL HTTP requests", ["status"])
LATENCY = Histogram("ctxgraph_http_request_seconds", "GraphQL HTTP request latency")
REDIS_CONNECTIONS = 64
# The POSTed body as the view read it (its value, or why it is refused), for Strawberry to reuse
# (the same bytes object comes back to `decode_json`): the body is parsed once.
_parsed_body: ContextVar[tuple[bytes, Any] | None] = ContextVar("ctxgraph_parsed_body", default=None)
# A body larger than this is parsed in a worker thread: 10 MB of JSON takes ~0.6 s to parse,
# time the event loop owes every other request.
OFF_LOOP_BYTES = 64 * 1024
STATUS_OF = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "RATE_LIMITED": 429, "BAD_USER_INPUT": 400}


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header; None when neither JSON type is acceptable.

    As the GraphQL-over-HTTP spec asks: no Accept header, or only a wildcard, means
    application/json (legacy clients); the GraphQL response type is used when named, and wins
    over application/json at equal preference.
    """
    if not accept:
        return JSON
    best: tuple[float, int, str] | None = None
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        rank = {GRAPHQL_RESPONSE: (2, GRAPHQL_RESPONSE), JSON: (1, JSON), "application/*": (0, JSON), "*/*": (0, JSON)}
        if media in rank and q > 0:
            candidate = (q, *rank[media])
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    return best[2] if best else None


def error_body(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extra}}]}


def error_response(status: int, message: str, code: str, media: str | None, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(error_body(message, code)), status_code=status, media_type=media or JSON, headers=dict(headers or {})
    )


def unavailable(media: str | None) -> Response:
    """503 for a request that met an unreachable PostgreSQL or Redis: try again shortly."""
    retry = {"Retry-After": str(outages.RETRY_AFTER_SECONDS)}
    return error_response(503, outages.MESSAGE, outages.CODE, media, retry)


def _refusal_status(code: str, media: str | None) -> int:
    """The status of a credential refused at the gate. As application/json, a GraphQL error like
    any other (200), as a missing credential is answered: Apollo and urql would otherwise surface
    a bad token as a network error and a missing one as a GraphQL error. As
    application/graphql-response+json, the spec's 4xx."""
    if media == JSON and code in ("UNAUTHENTICATED", "FORBIDDEN"):
        return 200
    return STATUS_OF.get(code, 400)


class BodyTooLarge(Exception):
    pass


class Gate:
    """Everything a GraphQL HTTP request must pass before the schema sees it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._headers_too_large(scope):
            await self._refuse_headers(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] != "/graphql":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        request_id = request.headers.get("x-request-id", "")
        if not REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_seen = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_seen, responded
            if message["type"] == "http.response.start":
                status_seen, responded = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            refusal = await self._check(request, scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            await self.app(scope, self._limited(receive, self._body_limit(request)), send_with_id)
        except BodyTooLarge:
            media = negotiate(request.headers.get("accept"))
            await error_response(413, "Request body too large", "BAD_USER_INPUT", media)(scope, receive, send_with_id)
        except Exception as exc:  # PostgreSQL or Redis unreachable, wherever the request met it (admission, express lane)
            if responded or not outages.is_outage(exc):
                raise
            log.warning("service unavailable [request %s]: %r", request_id, exc)
            await unavailable(negotiate(request.headers.get("accept")))(scope, receive, send_with_id)
        finally:
            REQUESTS.labels(str(status_seen)).inc()
            LATENCY.observe(time.perf_counter() - started)

    def _headers_too_large(self, scope: Scope) -> bool:
        """Whether the header section is over the limits: httptools, which uvicorn runs, has none
        (a 1 MB header or thousands of headers would reach the app), so the gate keeps them, for
        every path and WebSocket handshakes too, near common servers' (Node: 16 KB in all)."""
        headers = scope["headers"]
        if len(headers) > self.settings.max_headers:
            return True
        return sum(len(name) + len(value) for name, value in headers) > self.settings.max_header_bytes

    async def _refuse_headers(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = f"at most {self.settings.max_headers} headers of {self.settings.max_header_bytes} bytes in all"
        response = error_response(431, f"Request header fields too large: {limits}", "BAD_USER_INPUT", JSON)
        if scope["type"] == "http":
            await response(scope, receive, send)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "Request header fields too large"})

    def _body_limit(self, request: Request) -> int:
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        return self.settings.max_upload_bytes if multipart else self.settings.max_body_bytes

    @staticmethod
    def _limited(receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return wrapped

    async def _check(self, request: Request, scope: Scope) -> Response | None:
        headers = request.headers
        accept = headers.get("accept")
        media = scope["state"]["media"] = negotiate(accept)  # the view answers in it too
        wants_ide = request.method == "GET" and "text/html" in (accept or "")
        if media is None and not wants_ide:
            return error_response(406, "Accept application/graphql-response+json or application/json", "BAD_USER_INPUT", JSON)
        if request.method == "POST":
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            preflighted = any(h in (k for k, _ in scope["headers"]) for h in PREFLIGHT_HEADERS)
            if content_type == "multipart/form-data" and not preflighted:
                return error_response(
                    400, "Multipart requests need a GraphQL-Require-Preflight header", "BAD_USER_INPUT", media
                )
            if content_type not in (JSON, "multipart/form-data"):
                return error_response(415, "Content-Type must be application/json", "BAD_USER_INPUT", media)
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self._body_limit(request):
            return error_response(413, "Request body too large", "BAD_USER_INPUT", media)

        admission: Admission = scope["app"].state.admission
        credential = (headers.get("authorization"), headers.get("x-api-key"), headers.get("x-workspace-id"))
        try:
            principal, retry_after = await admission.admit(credential, request.client.host if request.client else "unknown")
        except ServiceError as exc:
            retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
            return error_response(_refusal_status(exc.code, media), exc.message, exc.code, media, retry)
        scope["state"]["principal"] = principal
        if retry_after is not None:
            return error_response(
                429, f"Rate limit of {self.settings.rate_limit_per_minute} requests a minute exceeded",
                "RATE_LIMITED", media, {"Retry-After": str(retry_after)},
            )
        return None


class GraphQLView(GraphQL):
    graphql_transport_ws_handler_class = GuardedTransportWSHandler

    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            multipart_uploads_enabled=True,
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.allowed_origins or settings.cors_origins,
        )
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            await self._json_body(request)
            response = await self.run(request)
        except ClientDisconnect:
            return  # the client left before its request was read: there is nobody to answer
        except Exception as exc:  # strawberry's HTTPException, raised for malformed requests
            status = getattr(exc, "status_code", None)
            if status is None:
                raise
            media = negotiate(request.headers.get("accept"))
            headers = {"Allow": "POST"} if status == 405 else None
            response = error_response(status, getattr(exc, "reason", str(exc)), "BAD_USER_INPUT", media, headers)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL with every asset from this server (`app/graphiql`): it works offline, and
        the page may load and connect to nothing but this origin."""
        return HTMLResponse(GRAPHIQL_PAGE, headers={"content-security-policy": GRAPHIQL_CSP})

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        """A POSTed JSON body, parsed once (`decode_json` hands the same value to Strawberry), off
        the event loop when large; None when there is none or it is not an acceptable object (the
        long way then refuses it, saying why)."""
        if request.method != "POST" or not request.headers.get("content-type", "").startswith(JSON):
            return None
        raw = await request.body()
        try:
            body = await asyncio.to_thread(read_json, raw) if len(raw) > OFF_LOOP_BYTES else read_json(raw)
        except UnacceptableJson as refusal:
            _parsed_body.set((raw, refusal))
            return None
        _parsed_body.set((raw, body))
        return body if isinstance(body, dict) else None

    def decode_json(self, data: str | bytes) -> object:
        """Every JSON a client sends under one policy (`read_json`), and an object: a request body,
        GET's variables and extensions, multipart's operations and map, a WebSocket message."""
        parsed = _parsed_body.get()
        if parsed is not None and parsed[0] is data:
            _parsed_body.set(None)
            value = parsed[1]
            if isinstance(value, UnacceptableJson):
                raise value
        else:
            value = read_json(data)
        if not isinstance(value, dict):
            kind = "null" if value is None else "an array (batching is not enabled)" if isinstance(value, list) else "a scalar"
            raise UnacceptableJson(f"expected an object, got {kind}")
        return value

    def parse_json(self, data: str | bytes) -> Any:
        """Strawberry's, with the 400 saying what is wrong (WebSockets close with 4400 instead)."""
        try:
            return self.decode_json(data)
        except json.JSONDecodeError as exc:
            raise HTTPException(400, f"The request is not acceptable JSON: {exc.msg}") from exc

    async def parse_multipart(self, request: Any) -> dict[str, Any]:
        try:
            return await super().parse_multipart(request)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:  # a `map` Strawberry cannot follow
            raise HTTPException(
                400, 'The multipart `map` must give each file a list of paths into the operations, like ["variables.input.file"]'
            ) from exc

    async def parse_http_body(self, request_adapter: Any) -> Any:
        request_data = await super().parse_http_body(request_adapter)
        if not isinstance(request_data.operation_name, (str, type(None))):
            raise HTTPException(400, "The GraphQL operation's `operationName` must be a string or null, if provided.")
        return request_data

    async def execute_single(self, request: Any, request_adapter: Any, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(request, request_adapter, *args, **kwargs)
        except Exception as exc:
            if isinstance(exc.__cause__, InvalidOperationTypeError) and request_adapter.method == "GET":
                raise HTTPException(405, "Only queries can be sent with GET; use POST") from exc
            raise

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:  # type: ignore[override]
        state = request.scope.get("state", {})
        return Context(
            services=self.services, request=request, response=response,
            principal=state.get("principal") or auth.Principal(),
            request_id=state.get("request_id") or uuid.uuid4().hex,
        )

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = request.scope.get("state", {}).get("media") or JSON  # as the gate negotiated it
        if request.scope.get("method") == "GET":  # cacheable by URL: no shared cache may serve one caller's answer to another
            sub_response.headers["cache-control"] = "private, no-store"
            sub_response.headers["vary"] = "Authorization, X-API-Key, X-Workspace-Id"
        request.scope.setdefault("state", {})["sub_response"] = sub_response
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """A request error (nothing executed: syntax, validation, variables, limits) has no
        `data`, and, as application/graphql-response+json, a 4xx status."""
        body: GraphQLHTTPResponse = await super().process_result(request, result)
        errors = result.errors or []
        if result.data is None and errors and all(e.path is None for e in errors):
            body.pop("data", None)
            sub_response = request.scope["state"]["sub_response"]
            if sub_response.media_type == GRAPHQL_RESPONSE:
                codes = {(e.extensions or {}).get("code") for e in errors}
                sub_response.status_code = next((STATUS_OF[c] for c in codes if c in STATUS_OF), 400)
        elif errors and _unavailable_throughout(result):
            sub_response = request.scope["state"]["sub_response"]
            sub_response.status_code = 503  # whatever the media type: the client should retry, not read it
            sub_response.headers["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
        return body

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = f"{sub_response.media_type}; charset=utf-8"
        return response

    def encode_json(self, data: object) -> str | bytes:
        """orjson: a 35 kB response encodes in a tenth of the time json.dumps takes.

        WebSocket messages (the only dicts with a `type`) stay text, since graphql-transport-ws
        sends text frames and Strawberry sends bytes as binary ones. (A `next` that thousands of
        sockets share never comes here: schema.fanout sends it.)"""
        if isinstance(data, dict) and "type" in data:
            return orjson.dumps(data).decode()
        return orjson.dumps(data)

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        """Authenticates the socket from connection_init's payload: authorization, apiKey, workspaceId."""
        params = credentials(context.connection_params)
        if not params["authorization"] and not params["api_key"]:
            raise ConnectionRejectionError({"message": "connection_init must carry authorization or apiKey"})
        socket = context.request
        admission: Admission = socket.scope["app"].state.admission
        credential = (params["authorization"], params["api_key"], params["workspace"])
        try:
            context.principal, context.credential_expires_at = await admission.identify_socket(
                credential, socket.client.host if socket.client else "unknown"
            )
        except ServiceError as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from exc
        return UNSET


def _unavailable_throughout(result: ExecutionResult) -> bool:
    """Whether the result failed as a whole for an unreachable PostgreSQL or Redis: every error
    says so and the data holds no value, only nulls (in objects that needed no database). A
    partial result stays 200: what did resolve is worth having, and its neighbours' errors carry
    the code."""
    if any((e.extensions or {}).get("code") != outages.CODE for e in result.errors or []):
        return False
    return _holds_nothing(result.data)


def _holds_nothing(data: Any) -> bool:
    if isinstance(data, dict):
        return all(_holds_nothing(value) for value in data.values())
    if isinstance(data, list):
        return all(_holds_nothing(value) for value in data)
    return data is None


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    checks: dict[str, str] = {}
    for name, probe in (("postgres", services.db.ping), ("redis", services.redis.ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """Only for whoever presents `Authorization: Bearer <CTXGRAPH_METRICS_TOKEN>`: the figures tell
    an outsider the traffic, the errors and the load. Without a token configured there is no
    such endpoint (404, nothing to probe); a wrong or missing token is 401."""
    token = request.app.state.services.settings.metrics_token
    if token is None:
        return PlainTextResponse("Not Found", status_code=404)
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return PlainTextResponse("Unauthorized", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def redis_client(url: str) -> Redis:
    """A client whose calls wait for a free connection instead of failing: a burst (1,000 sockets
    connecting at once, each counted by the rate limiter) must queue, not error.

    A call whose connection turns out dead (Redis restarted since it was pooled) runs once more
    on a new one; while Redis is down the second attempt fails at once too (503 to the client)."""
    pool = BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=20, retry=Retry(NoBackoff(), 1))
    return Redis(connection_pool=pool)


def create_app(settings: Settings) -> Starlette:
    """The app for `settings`; connections open on first use and close at shutdown."""
    settings = settings.with_secrets()
    services = Services(
        settings=settings, db=Database(settings), redis=redis_client(settings.redis_url or ""),
        vault=Vault(settings.encryption_key or ""),
    )
    view = GraphQLView(services)
    setup_broker(settings)  # mutations enqueue jobs through it

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        gc.freeze()  # what start-up built lives as long as the process: no collection need walk it again
        # A full collection walks every open socket's objects (~220 ms with 1,000 subscribers,
        # a pause in every delivery): collect the young generation every 20,000 allocations
        # instead of 700, and fully after 100 middle collections instead of 10.
        gc.set_threshold(20_000, 20, 100)
        try:
            yield
        finally:
            await close_hub(services.redis)
            await services.redis.aclose()
            await services.db.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *([Mount("/graphiql", StaticFiles(directory=GRAPHIQL))] if settings.graphiql else []),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.admission = Admission(services.db, services.redis, settings)
    app.add_middleware(Gate, settings=settings)
    if settings.cors_origins:  # outermost: preflights are answered, and every answer (errors too) is readable
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=list(CORS_REQUEST_HEADERS), expose_headers=["x-request-id", "retry-after"],
            allow_credentials=False,  # credentials travel in headers, never cookies: `*` stays safe
            max_age=600,
        )
    return app
