"""Settings, read once from the environment.

Every setting has an env var (listed in the README). `DATABASE_URL` and `REDIS_URL` may be
unset: `app.embedded` then starts local servers and fills them in.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


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
    allowed_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 1200
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 20_000
    max_nodes: int = 50_000
    max_subscriptions_per_connection: int = 100
    app_role: str = "ctxgraph_app"
    db_pool_size: int = 10
    statement_timeout_ms: int = 30_000
    log_level: str = "info"
    "Answer whole contact-list queries with one SQL statement when their selection allows (schema.planner)."
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
            rate_limit_per_minute=_int(e.get("CTXGRAPH_RATE_LIMIT_PER_MINUTE"), 1200),
            max_body_bytes=_int(e.get("CTXGRAPH_MAX_BODY_BYTES"), 10 * 1024 * 1024),
            max_upload_bytes=_int(e.get("CTXGRAPH_MAX_UPLOAD_BYTES"), 100 * 1024 * 1024),
            max_depth=_int(e.get("CTXGRAPH_MAX_DEPTH"), 10),
            max_aliases=_int(e.get("CTXGRAPH_MAX_ALIASES"), 30),
            max_tokens=_int(e.get("CTXGRAPH_MAX_TOKENS"), 20_000),
            max_nodes=_int(e.get("CTXGRAPH_MAX_NODES"), 50_000),
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
