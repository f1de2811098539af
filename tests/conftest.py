"""Test harness: a fresh database built by the migrations, real Redis, the real app.

PostgreSQL and Redis come from CTXGRAPH_TEST_DATABASE_URL / CTXGRAPH_TEST_REDIS_URL, else from
127.0.0.1:5432 / :6379 when they answer, else from the embedded servers (a fresh laptop;
CTXGRAPH_TEST_EMBEDDED=1 forces that path).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db.migrate import upgrade
from app.http import create_app


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(admin PostgreSQL URL, Redis URL) of real servers."""
    db_url = os.environ.get("CTXGRAPH_TEST_DATABASE_URL")
    redis_url = os.environ.get("CTXGRAPH_TEST_REDIS_URL")
    local = os.environ.get("CTXGRAPH_TEST_EMBEDDED", "") not in ("1", "true")  # force the laptop path
    if not db_url and local and _answers("127.0.0.1", 5432):
        db_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    if not redis_url and local and _answers("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
    with contextlib.ExitStack() as stack:
        if not db_url or not redis_url:
            from app.embedded import services

            home = Path(os.environ.get("CTXGRAPH_TEST_HOME") or tmp_path_factory.mktemp("embedded"))
            embedded = stack.enter_context(
                services(Settings(database_url=db_url, redis_url=redis_url, home=home))
            )
            db_url, redis_url = embedded.database_url, embedded.redis_url
        assert db_url and redis_url
        yield db_url, redis_url


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings over a new database, migrated from scratch: every run tests the migrations."""
    admin_url, redis_url = servers
    name = f"ctxgraph_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s = Settings(
        database_url=make_url(admin_url).set(database=name).render_as_string(hide_password=False),
        redis_url=redis_url,
        home=tmp_path_factory.mktemp("home"),
        rate_limit_per_minute=1_000_000,
        fetch_private_networks=True,  # url tests fetch from servers on 127.0.0.1
    ).with_secrets()
    upgrade(s)
    try:
        yield s
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Api:
    """A GraphQL client for tests, speaking to the app in process (HTTP semantics intact)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client

    async def post(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None,
                   api_key: str | None = None, workspace: str | None = None, headers: dict[str, str] | None = None,
                   ) -> httpx.Response:
        h = {"content-type": "application/json", **(headers or {})}
        if token:
            h["authorization"] = f"Bearer {token}"
        if api_key:
            h["x-api-key"] = api_key
        if workspace:
            h["x-workspace-id"] = workspace
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=h)

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, **auth: Any) -> dict[str, Any]:
        response = await self.post(query, variables, **auth)
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None, **auth: Any) -> dict[str, Any]:
        body = await self(query, variables, **auth)
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    yield application
    services = application.state.services
    await services.redis.aclose()
    await services.db.dispose()


@pytest.fixture(scope="session")
async def api(app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client)


SIGN_UP = """
mutation($input: SignUpInput!) {
  signUp(input: $input) {
    accessToken refreshToken expiresAt
    viewer { user { id email } workspaces { id name viewerRole } }
    userErrors { field message code }
  }
}
"""


class Account:
    def __init__(self, email: str, password: str, payload: dict[str, Any]) -> None:
        self.email = email
        self.password = password
        self.token: str = payload["accessToken"]
        self.refresh_token: str = payload["refreshToken"]
        self.user_id: str = payload["viewer"]["user"]["id"]
        self.workspace_id: str = payload["viewer"]["workspaces"][0]["id"]

    @property
    def auth(self) -> dict[str, str]:
        return {"token": self.token, "workspace": self.workspace_id}


async def sign_up(api: Api, *, email: str | None = None, workspace: str = "Acme",
                  invitation_token: str | None = None) -> Account:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery"
    data = await api.data(SIGN_UP, {"input": {"email": email, "password": password, "name": "Test User",
                                              "workspaceName": workspace, "invitationToken": invitation_token}})
    payload = data["signUp"]
    assert payload["userErrors"] == []
    return Account(email, password, payload)


@pytest.fixture
async def alice(api: Api) -> Account:
    return await sign_up(api, workspace="Alice Co")


@pytest.fixture
async def bob(api: Api) -> Account:
    return await sign_up(api, workspace="Bob Co")


def unauthenticated(response: httpx.Response) -> bool:
    """Whether a request's credential was refused, as an application/json client sees it: 200 and
    one UNAUTHENTICATED error (application/graphql-response+json gets 401)."""
    errors = response.json().get("errors") or [] if response.status_code == 200 else []
    return [(e.get("extensions") or {}).get("code") for e in errors] == ["UNAUTHENTICATED"]


def early_in_a_window(needed: float = 15.0) -> float:
    """The seconds to wait before a test that counts against per-minute budgets, so that all its
    counts fall in one window (rate limits and failure budgets count in fixed minutes): none
    early in a minute."""
    import time

    into = time.time() % 60
    return 0.0 if into < 60 - needed else 60 - into + 0.05


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


class SqlCounter:
    """Counts the SQL statements the app sends while `with counter:` is open."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def __enter__(self) -> SqlCounter:
        from sqlalchemy import event

        self.statements = []
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import event

        event.remove(self.engine.sync_engine, "before_cursor_execute", self._count)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def sql(app: Any) -> SqlCounter:
    return SqlCounter(app.state.services.db.engine)


@contextlib.contextmanager
def served(settings: Settings, http: str | None = None) -> Iterator[str]:
    """The app for `settings` served by uvicorn on a free port, with the options `ctxgraph serve`
    uses (and the HTTP implementation `http`, else uvicorn's choice), in a thread with a loop of
    its own: its base URL."""
    import threading
    import time

    import uvicorn

    from app.cli import uvicorn_options

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = uvicorn_options(replace(settings, host="127.0.0.1", port=port, log_level="warning"))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **options, **({"http": http} if http else {})))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    with served(settings) as url:
        yield url
