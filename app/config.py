"""Settings, read once from the environment.

Every setting has an env var (listed in the README). `DATABASE_URL` and `REDIS_URL` may be
unset: `app.embedded` then starts local servers and fills them in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


MIN_JWT_SECRET_BYTES = 32
# Values published as examples (docker-compose.yml once fell back to these): anyone can sign
# tokens with them, or open what they sealed.
_PUBLISHED_SECRETS = frozenset({
    "change-me-insecure-jwt-secret-placeholder", "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=",
})
_PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "placeholder")
_MAKE_JWT_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
_MAKE_ENCRYPTION_KEY = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


class InsecureSecret(ValueError):
    """A configured secret that anyone may know or guess: the server refuses to start with it."""


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None, default: int) -> int:
    return int(value) if value not in (None, "") else default


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    home: Path = Path(".ctxgraph")
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str | None = None
    encryption_key: str | None = None
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 3600
    graphiql: bool = True
    introspection: bool = True
    "Origins whose pages may open WebSockets (`*` for any); empty: the CORS origins."
    allowed_origins: tuple[str, ...] = ()
    "Origins whose pages may call the API over HTTP (CORS; exact origins, `*` for any): none by default."
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 1200
    "Failed authentications a minute of one credential (an API key's prefix, a login's email) before it waits."
    auth_failures_per_credential: int = 20
    "Failed authentications a minute from one client address before credentials not seen lately wait."
    auth_failures_per_address: int = 3000
    "Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDRs); none by default."
    trusted_proxies: tuple[str, ...] = ()
    "The bearer token /metrics wants; unset: /metrics is not served."
    metrics_token: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    "A request's header section (names and values) may total this many bytes, in at most max_headers headers (431 beyond)."
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 20_000
    max_nodes: int = 50_000
    "Characters of a GraphQL document (longer values belong in variables); refused before it is parsed."
    max_document_chars: int = 500_000
    "Lines of a GraphQL document (each error's position is found by scanning the lines before it)."
    max_document_lines: int = 10_000
    "Fragment definitions in one document."
    max_fragments: int = 1_000
    "Selections (fields, inline fragments, fragment spreads) of a document's operations with every fragment inlined."
    max_selections: int = 10_000
    "Fields that may answer one response key of one object (the same field selected again, fragments included)."
    max_merged_fields: int = 100
    "Distinct fragments spread into one object, directly or through other fragments (validation compares each pair)."
    max_object_fragments: int = 50
    "Directives on one field, fragment or operation."
    max_directives_per_location: int = 10
    "Directives of an operation with its fragments inlined."
    max_directives: int = 1_000
    max_subscriptions_per_connection: int = 100
    app_role: str = "ctxgraph_app"
    db_pool_size: int = 10
    statement_timeout_ms: int = 30_000
    log_level: str = "info"
    "Answer each query the declarations cover with one SQL statement (schema.plan); off, the resolvers answer all."
    planner: bool = True
    "Redis key namespace of the job queues; unset: derived from the database (see app.jobs.broker)."
    broker_namespace: str | None = None
    "A RUNNING job whose heartbeat is older than this is taken over; a PENDING one whose message is gone, re-sent."
    job_stale_seconds: int = 60
    job_reaper_interval_seconds: int = 15
    "Runs of one job (first run, redeliveries after a crash, retries after errors) before it is FAILED."
    job_max_attempts: int = 5
    job_batch_size: int = 2500
    "Let url documents and FILE sources fetch from loopback and private addresses (off: public only)."
    fetch_private_networks: bool = False
    "Seconds between the server's graphql-transport-ws pings on an idle socket."
    ws_keepalive_seconds: int = 15
    "A socket re-authenticates its credential this often (revocations also close it at once, via Redis)."
    ws_auth_recheck_seconds: int = 60
    "Relationship rows one graph question (relationshipGraph's walk, introductionPath) may read."
    graph_budget_edges: int = 250_000
    "Contacts one graph question may reach."
    graph_budget_nodes: int = 10_000
    "Wall time of one graph question, checked before each of its statements."
    graph_budget_ms: int = 5_000
    "Edges a relationshipGraph may return (past it: QUERY_TOO_COMPLEX)."
    graph_max_edges: int = 5_000
    "Graph questions (relationshipGraph, introductionPath) one process answers at once; the rest wait their turn."
    graph_concurrency: int = 1
    "Sockets close with 1013 (try again later) once Redis has been unreachable this long: their events are lost."
    ws_redis_outage_seconds: int = 30
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            redis_url=e.get("REDIS_URL") or None,
            home=Path(e.get("CTXGRAPH_HOME") or ".ctxgraph"),
            host=e.get("CTXGRAPH_HOST") or "127.0.0.1",
            port=_int(e.get("CTXGRAPH_PORT"), 8000),
            jwt_secret=e.get("CTXGRAPH_JWT_SECRET") or None,
            encryption_key=e.get("CTXGRAPH_ENCRYPTION_KEY") or None,
            access_token_ttl=_int(e.get("CTXGRAPH_ACCESS_TOKEN_TTL"), 15 * 60),
            refresh_token_ttl=_int(e.get("CTXGRAPH_REFRESH_TOKEN_TTL"), 30 * 24 * 3600),
            graphiql=_bool(e.get("CTXGRAPH_GRAPHIQL"), True),
            introspection=_bool(e.get("CTXGRAPH_INTROSPECTION"), True),
            allowed_origins=_list(e.get("CTXGRAPH_ALLOWED_ORIGINS")),
            cors_origins=_list(e.get("CTXGRAPH_CORS_ORIGINS")),
            rate_limit_per_minute=_int(e.get("CTXGRAPH_RATE_LIMIT_PER_MINUTE"), 1200),
            auth_failures_per_credential=_int(e.get("CTXGRAPH_AUTH_FAILURES_PER_CREDENTIAL"), 20),
            auth_failures_per_address=_int(e.get("CTXGRAPH_AUTH_FAILURES_PER_ADDRESS"), 3000),
            trusted_proxies=_list(e.get("CTXGRAPH_TRUSTED_PROXIES")),
            metrics_token=e.get("CTXGRAPH_METRICS_TOKEN") or None,
            max_body_bytes=_int(e.get("CTXGRAPH_MAX_BODY_BYTES"), 10 * 1024 * 1024),
            max_upload_bytes=_int(e.get("CTXGRAPH_MAX_UPLOAD_BYTES"), 100 * 1024 * 1024),
            max_header_bytes=_int(e.get("CTXGRAPH_MAX_HEADER_BYTES"), 16 * 1024),
            max_headers=_int(e.get("CTXGRAPH_MAX_HEADERS"), 100),
            max_depth=_int(e.get("CTXGRAPH_MAX_DEPTH"), 10),
            max_aliases=_int(e.get("CTXGRAPH_MAX_ALIASES"), 30),
            max_tokens=_int(e.get("CTXGRAPH_MAX_TOKENS"), 20_000),
            max_nodes=_int(e.get("CTXGRAPH_MAX_NODES"), 50_000),
            max_document_chars=_int(e.get("CTXGRAPH_MAX_DOCUMENT_CHARS"), 500_000),
            max_document_lines=_int(e.get("CTXGRAPH_MAX_DOCUMENT_LINES"), 10_000),
            max_fragments=_int(e.get("CTXGRAPH_MAX_FRAGMENTS"), 1_000),
            max_selections=_int(e.get("CTXGRAPH_MAX_SELECTIONS"), 10_000),
            max_merged_fields=_int(e.get("CTXGRAPH_MAX_MERGED_FIELDS"), 100),
            max_object_fragments=_int(e.get("CTXGRAPH_MAX_OBJECT_FRAGMENTS"), 50),
            max_directives_per_location=_int(e.get("CTXGRAPH_MAX_DIRECTIVES_PER_LOCATION"), 10),
            max_directives=_int(e.get("CTXGRAPH_MAX_DIRECTIVES"), 1_000),
            max_subscriptions_per_connection=_int(e.get("CTXGRAPH_MAX_SUBSCRIPTIONS"), 100),
            app_role=e.get("CTXGRAPH_APP_ROLE") or "ctxgraph_app",
            db_pool_size=_int(e.get("CTXGRAPH_DB_POOL_SIZE"), 10),
            statement_timeout_ms=_int(e.get("CTXGRAPH_STATEMENT_TIMEOUT_MS"), 30_000),
            log_level=e.get("CTXGRAPH_LOG_LEVEL") or "info",
            planner=_bool(e.get("CTXGRAPH_PLANNER"), True),
            broker_namespace=e.get("CTXGRAPH_BROKER_NAMESPACE") or None,
            job_stale_seconds=_int(e.get("CTXGRAPH_JOB_STALE_SECONDS"), 60),
            job_reaper_interval_seconds=_int(e.get("CTXGRAPH_JOB_REAPER_INTERVAL_SECONDS"), 15),
            job_max_attempts=_int(e.get("CTXGRAPH_JOB_MAX_ATTEMPTS"), 5),
            job_batch_size=_int(e.get("CTXGRAPH_JOB_BATCH_SIZE"), 2500),
            fetch_private_networks=_bool(e.get("CTXGRAPH_FETCH_PRIVATE_NETWORKS"), False),
            ws_keepalive_seconds=_int(e.get("CTXGRAPH_WS_KEEPALIVE_SECONDS"), 15),
            ws_auth_recheck_seconds=_int(e.get("CTXGRAPH_WS_AUTH_RECHECK_SECONDS"), 60),
            graph_budget_edges=_int(e.get("CTXGRAPH_GRAPH_BUDGET_EDGES"), 250_000),
            graph_budget_nodes=_int(e.get("CTXGRAPH_GRAPH_BUDGET_NODES"), 10_000),
            graph_budget_ms=_int(e.get("CTXGRAPH_GRAPH_BUDGET_MS"), 5_000),
            graph_max_edges=_int(e.get("CTXGRAPH_GRAPH_MAX_EDGES"), 5_000),
            graph_concurrency=_int(e.get("CTXGRAPH_GRAPH_CONCURRENCY"), 1),
            ws_redis_outage_seconds=_int(e.get("CTXGRAPH_WS_REDIS_OUTAGE_SECONDS"), 30),
        )

    def with_secrets(self) -> Settings:
        """Fill unset secrets from files under `home`, generating them on first use.

        Several processes sharing one `home` (serve + worker on one machine) then agree on
        them; processes on different machines must be given them by env.
        """
        jwt_secret = self.jwt_secret or _persisted(self.home / "jwt_secret", lambda: secrets.token_urlsafe(48))
        encryption_key = self.encryption_key or _persisted(
            self.home / "encryption_key", lambda: Fernet.generate_key().decode()
        )
        _check_jwt_secret(jwt_secret)
        _check_encryption_key(encryption_key)
        return replace(self, jwt_secret=jwt_secret, encryption_key=encryption_key)

    @property
    def redis_namespace(self) -> str:
        """Prefix of this deployment's Redis keys (queues, rate limits): `broker_namespace`, else
        one per database, so deployments (or test runs) sharing a Redis but not a database never
        take each other's jobs or spend each other's rate limits."""
        if self.broker_namespace:
            return self.broker_namespace
        url = urlsplit(self.database_url or "")
        where = f"{url.hostname}:{url.port}{url.path}"
        return f"ctxgraph:{url.path.strip('/') or 'db'}:{hashlib.sha256(where.encode()).hexdigest()[:8]}"

    @property
    def sqlalchemy_url(self) -> str:
        """`DATABASE_URL` is a plain libpq URL; SQLAlchemy is told to use psycopg 3."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (and no embedded server was started)")
        url = self.database_url
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split(':', 1)[0]}://")


def _placeholder(value: str) -> bool:
    return value in _PUBLISHED_SECRETS or any(word in value.lower() for word in _PLACEHOLDER_WORDS)


def _check_jwt_secret(secret: str) -> None:
    """Whoever knows or guesses the JWT secret signs access tokens as anyone."""
    if _placeholder(secret):
        raise InsecureSecret(f"CTXGRAPH_JWT_SECRET is a published placeholder: anyone could sign access tokens "
                             f"with it. Generate one: {_MAKE_JWT_SECRET}")
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise InsecureSecret(f"CTXGRAPH_JWT_SECRET is {len(secret.encode())} bytes; at least {MIN_JWT_SECRET_BYTES} "
                             f"are needed so that it cannot be guessed. Generate one: {_MAKE_JWT_SECRET}")


def _check_encryption_key(key: str) -> None:
    """A key that is not a Fernet key fails at the first sealed credential; a published one seals nothing."""
    try:
        decoded = base64.urlsafe_b64decode(key.encode())
        Fernet(key.encode())
    except (ValueError, binascii.Error):
        raise InsecureSecret(f"CTXGRAPH_ENCRYPTION_KEY is not a Fernet key (32 bytes, url-safe base64). "
                             f"Generate one: {_MAKE_ENCRYPTION_KEY}") from None
    if _placeholder(key) or _placeholder(decoded.decode("latin-1")):
        raise InsecureSecret(f"CTXGRAPH_ENCRYPTION_KEY is a published placeholder: anyone could open the source "
                             f"credentials it seals. Generate one: {_MAKE_ENCRYPTION_KEY}")


def _persisted(path: Path, make: callable) -> str:  # type: ignore[valid-type]
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    tmp.chmod(0o600)
    tmp.replace(path)
    return value
