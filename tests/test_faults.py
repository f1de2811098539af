"""Faults survived: a served API process on a PostgreSQL and a Redis of the test's own, which it
restarts and stops (never the machine's shared servers).

What a client sees: after a restart, every request succeeds; while a server is down, 503 with
Retry-After and SERVICE_UNAVAILABLE (JSON, both media types) and sockets closed with 1013; once
it is back, success again without restarting the API; a jobProgress subscriber that lived
through a Redis restart gets the job's current state and `complete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import websockets
from websockets.asyncio.client import connect

from app.config import Settings
from app.db.engine import Database
from app.db.migrate import upgrade
from app.jobs.broker import setup_broker
from app.pubsub import publish_job
from app.services import ids
from app.services import jobs as job_service
from tests.conftest import SIGN_UP, served
from tests.jobs_support import JOB_FIELDS, START_IMPORT, contacts_payload
from tests.test_subscriptions import Socket

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PROTOCOL = "graphql-transport-ws"
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { " + JOB_FIELDS + " } }"
CONTACTS = "query { contacts(first: 5) { edges { node { id fullName } } } }"
CREATE_CONTACT = """
mutation($input: CreateContactInput!) { createContact(input: $input) { contact { id } userErrors { message } } }
"""
GRAPHQL_RESPONSE = "application/graphql-response+json"
OUTAGE_SECONDS = 3  # the served app's ws_redis_outage_seconds

pytestmark = pytest.mark.skipif(not (PG_BIN / "pg_ctl").exists() or not shutil.which("redis-server"),
                                reason="needs PostgreSQL 15's binaries and redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} after {timeout}s"
        time.sleep(0.05)


class PrivatePostgres:
    """A cluster in a temporary directory, trust auth, on a free port (run as `postgres` when the
    tests run as root, since PostgreSQL refuses root)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ctxgraph-faults-"))  # not under pytest's 0700 root-owned tree
        self.data = self.root / "pgdata"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, cwd="/")

    def _ctl(self, *argv: str) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *argv)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._ctl("-o", options, "-l", str(self.data / "log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivateRedis:
    def __init__(self) -> None:
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                return bool(client.ping())
            return False

        _until(answers, 10, "redis-server did not start")
        client.close()

    def stop(self) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(timeout=10)
        self._process = None


@dataclass
class Stack:
    postgres: PrivatePostgres
    redis: PrivateRedis
    settings: Settings
    url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Stack]:
    """A PostgreSQL and a Redis of this module's own, migrated, and the app served on them."""
    root = tmp_path_factory.mktemp("faults")
    postgres, private_redis = PrivatePostgres(), PrivateRedis()
    try:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ctxgraph")
        own = Settings(
            database_url=postgres.url("ctxgraph"), redis_url=private_redis.url,
            home=root / "home", rate_limit_per_minute=1_000_000, ws_redis_outage_seconds=OUTAGE_SECONDS,
            ws_keepalive_seconds=1,
        ).with_secrets()
        upgrade(own)
        with served(own) as url:
            yield Stack(postgres, private_redis, own, url)
    finally:
        setup_broker(settings)  # the session's broker again, for the modules that follow
        with contextlib.suppress(Exception):
            private_redis.stop()
        postgres.remove()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        yield http


@dataclass
class User:
    token: str
    workspace_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "x-workspace-id": self.workspace_id}

    @property
    def init(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "workspaceId": self.workspace_id}


async def post(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
               user: User | None = None, accept: str = "application/json") -> httpx.Response:
    headers = {"accept": accept, **(user.headers if user else {})}
    return await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


async def sign_up(client: httpx.AsyncClient) -> User:
    response = await post(client, SIGN_UP, {"input": {
        "email": f"f-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery", "name": "F",
        "workspaceName": "Faults",
    }})
    payload = response.json()["data"]["signUp"]
    return User(payload["accessToken"], payload["viewer"]["workspaces"][0]["id"])


def forget_credentials(stack: Stack) -> None:
    """Every remembered credential is looked up again (what a key revocation does)."""
    with redis.Redis.from_url(stack.redis.url) as r:
        r.incr(f"{stack.settings.redis_namespace}:credentials-epoch")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE))
    errors = response.json()["errors"]
    assert errors and all(e["extensions"]["code"] == "SERVICE_UNAVAILABLE" for e in errors), errors


async def until_ok(request: Callable[[], Awaitable[httpx.Response]], timeout: float = 20) -> httpx.Response:
    """Polls until a request answers 200 without errors: the recovery, without a restart."""
    deadline = time.monotonic() + timeout
    while True:
        response = await request()
        if response.status_code == 200 and "errors" not in response.json():
            return response
        assert response.status_code == 503, response.text  # nothing but "unavailable" meanwhile
        assert time.monotonic() < deadline, f"not recovered after {timeout}s: {response.text}"
        await asyncio.sleep(0.1)


async def every_kind_of_request(client: httpx.AsyncClient, user: User) -> list[httpx.Response]:
    """Concurrently: credential look-ups, planned reads (the express lane), resolvers and ORM
    writes, so that every pooled connection of both pools is used."""
    calls = []
    for i in range(6):
        calls += [post(client, CONTACTS, user=user), post(client, "{ viewer { user { email } } }", user=user),
                  post(client, CREATE_CONTACT, {"input": {"fullName": f"After {i}"}}, user=user)]
    return list(await asyncio.gather(*calls))


async def test_after_a_postgres_restart_every_request_succeeds(stack: Stack, client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    for _ in range(2):  # the second round is the express lane's
        assert all(r.status_code == 200 and "errors" not in r.json() for r in await every_kind_of_request(client, user))
    stack.postgres.restart()
    forget_credentials(stack)
    for response in await every_kind_of_request(client, user):
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.json()


async def test_while_postgres_is_down_requests_get_503_and_succeed_once_it_is_back(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    user = await sign_up(client)
    for _ in range(2):
        assert (await post(client, CONTACTS, user=user)).status_code == 200
    stack.postgres.stop()
    try:
        for accept in ("application/json", GRAPHQL_RESPONSE):
            assert_unavailable(await post(client, CONTACTS, user=user, accept=accept))  # remembered: the read fails
            assert_unavailable(await post(client, "{ viewer { user { email } } }", user=user, accept=accept))
            assert_unavailable(await post(client, CREATE_CONTACT, {"input": {"fullName": "Down"}}, user=user,
                                          accept=accept))
        forget_credentials(stack)
        assert_unavailable(await post(client, CONTACTS, user=user))  # the credential look-up fails
        ws = await connect(stack.url.replace("http", "ws") + "/graphql", subprotocols=[PROTOCOL])  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": user.init}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        stack.postgres.start()
    await until_ok(lambda: post(client, CONTACTS, user=user))
    for response in await every_kind_of_request(client, user):
        assert response.status_code == 200 and "errors" not in response.json(), response.text


async def test_while_redis_is_down_requests_get_503_and_succeed_once_it_is_back(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    user = await sign_up(client)
    assert (await post(client, CONTACTS, user=user)).status_code == 200
    stack.redis.stop()
    try:
        for accept in ("application/json", GRAPHQL_RESPONSE):
            assert_unavailable(await post(client, CONTACTS, user=user, accept=accept))
            assert_unavailable(await post(client, "{ __typename }", accept=accept))  # anonymous too
    finally:
        stack.redis.start()
    await until_ok(lambda: post(client, CONTACTS, user=user))
    for response in await every_kind_of_request(client, user):
        assert response.status_code == 200 and "errors" not in response.json(), response.text


class Subscription(Socket):
    """One graphql-transport-ws operation on its own socket."""

    @classmethod
    async def open(cls, stack: Stack, user: User, query: str, variables: dict[str, Any]) -> Subscription:
        ws = await connect(stack.url.replace("http", "ws") + "/graphql", subprotocols=[PROTOCOL])  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": user.init}))
        subscription = cls(ws)
        assert (await subscription.receive())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        return subscription

    async def job(self) -> dict[str, Any]:
        message = await self.receive()
        assert message["type"] == "next" and "errors" not in message["payload"], message
        return message["payload"]["data"]["jobProgress"]  # type: ignore[no-any-return]


async def _pending_job(client: httpx.AsyncClient, user: User) -> str:
    response = await post(client, START_IMPORT, {"input": {
        "target": "CONTACTS", "adapter": "GENERIC_JSON", "data": contacts_payload(3, uuid.uuid4().hex[:6]),
    }}, user=user)
    return response.json()["data"]["startImport"]["job"]["id"]  # type: ignore[no-any-return]


async def test_a_job_subscriber_gets_the_state_reached_while_redis_was_down_and_completes(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """No worker runs here: the test moves the job through the service, as a worker would."""
    user = await sign_up(client)
    job_id = await _pending_job(client, user)
    subscription = await Subscription.open(stack, user, JOB_PROGRESS, {"id": job_id})
    assert (await subscription.job())["status"] == "PENDING"
    db, publisher = Database(stack.settings), redis.asyncio.Redis.from_url(stack.redis.url)
    try:
        _, job_uuid = ids.decode(job_id)
        async with db.system() as s:
            running = await job_service.claim(s, job_uuid, 60)
            await s.commit()
        assert running is not None
        await publish_job(publisher, running.id, job_service.snapshot(running))
        assert (await subscription.job())["status"] == "RUNNING"  # events flow

        stack.redis.stop()
        try:
            async with db.system() as s:  # the job ends while nobody can hear it
                assert await job_service.finish(s, running, "COMPLETED") is not None
                await s.commit()
        finally:
            stack.redis.start()
        assert (await subscription.job())["status"] == "COMPLETED"
        assert (await subscription.receive())["type"] == "complete"
    finally:
        await subscription.ws.close()
        await publisher.aclose()
        await db.dispose()


async def test_workspace_events_end_with_an_error_after_a_redis_restart(stack: Stack, client: httpx.AsyncClient) -> None:
    """Events published while Redis was down are gone: the subscriber is told to subscribe again."""
    user = await sign_up(client)
    subscription = await Subscription.open(stack, user, "subscription { workspaceEvents { type } }", {})
    await until_ok(lambda: post(client, CREATE_CONTACT, {"input": {"fullName": "Event"}}, user=user))
    assert (await subscription.receive())["payload"]["data"]["workspaceEvents"]["type"] == "contact.created"
    stack.redis.stop()
    stack.redis.start()
    message = await subscription.receive()
    assert message["type"] in ("next", "error"), message
    errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
    assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"], errors
    await subscription.ws.close()


async def test_sockets_close_with_1013_when_redis_stays_down(stack: Stack, client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    job_id = await _pending_job(client, user)
    subscription = await Subscription.open(stack, user, JOB_PROGRESS, {"id": job_id})
    assert (await subscription.job())["status"] == "PENDING"
    stack.redis.stop()
    started = time.monotonic()
    try:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await subscription.receive(timeout=OUTAGE_SECONDS + 15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert time.monotonic() - started >= OUTAGE_SECONDS - 0.5
    finally:
        stack.redis.start()
    again = await Subscription.open(stack, user, JOB_PROGRESS, {"id": job_id})  # the client's reconnection
    assert (await again.job())["status"] == "PENDING"
    await again.ws.close()


async def test_effects_after_commit_that_find_redis_gone_do_not_fail_the_mutation(app: Any) -> None:
    """The change has committed: an event Redis cannot take is logged and skipped, the effects
    after it still run, and the mutation answers as it succeeded. A bug is still an error."""
    from dataclasses import replace

    from redis.asyncio import Redis
    from sqlalchemy import text

    from app.services import effects

    unreachable = Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=1)
    services = replace(app.state.services, redis=unreachable)
    ran: list[str] = []

    async def later(_: Any) -> None:
        ran.append("later")

    async def bug(_: Any) -> None:
        raise KeyError("not an outage")

    async with services.db.tenant(uuid.uuid4()) as s:
        await s.execute(text("select 1"))
        effects.event(s, "contact.created", "Contact", uuid.uuid4())
        effects.on_commit(s, later)
        await effects.commit(s, services)
        assert ran == ["later"]

        await s.execute(text("select 1"))
        effects.on_commit(s, bug)
        with pytest.raises(KeyError):
            await effects.commit(s, services)
    await unreachable.aclose()
