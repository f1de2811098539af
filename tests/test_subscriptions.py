"""Subscriptions over graphql-transport-ws against real API processes (uvicorn), fed by Redis
pub/sub: progress made by a worker in another process, events of mutations sent to another
API process, auth failures on the socket, isolation between workspaces."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from app.config import Settings
from tests.conftest import Account, Api
from tests.jobs_support import JOB_FIELDS, contacts_payload, running_worker, start_import

CTXGRAPH = str(Path(sys.executable).with_name("ctxgraph"))
PROTOCOL = "graphql-transport-ws"
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { %s } }" % JOB_FIELDS
EVENTS = "subscription($types: [String!]) { workspaceEvents(types: $types) { type occurredAt node { id } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings, **env: str) -> Iterator[str]:
    """An API process (`ctxgraph serve --no-worker`) on the test database: its ws URL."""
    port = _free_port()
    env = {
        **os.environ, "DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
        "CTXGRAPH_HOME": str(settings.home), "CTXGRAPH_LOG_LEVEL": "warning", **env,
    }
    process = subprocess.Popen([CTXGRAPH, "serve", "--no-worker", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the API process did not start"
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    """A second API process with the default settings (a minute between re-authentications)."""
    with serving(settings) as url:
        yield url


@pytest.fixture(scope="module")
def strict_server(settings: Settings) -> Iterator[str]:
    """An API process issuing 2-second access tokens, pinging every second, allowing 2 operations
    per socket."""
    with serving(settings, CTXGRAPH_ACCESS_TOKEN_TTL="2", CTXGRAPH_WS_KEEPALIVE_SECONDS="1",
                 CTXGRAPH_MAX_SUBSCRIPTIONS="2") as url:
        yield url


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[None]:
    with running_worker(settings):
        yield


class Socket:
    """A graphql-transport-ws client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        op = uuid.uuid4().hex
        await self.ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}))
        return op

    async def receive(self, timeout: float = 30) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return message  # type: ignore[no-any-return]


async def open_socket(url: str, payload: dict[str, Any]) -> Socket:
    ws = await connect(url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    socket_ = Socket(ws)
    ack = await socket_.receive()
    assert ack["type"] == "connection_ack", ack
    return socket_


def auth_of(account: Account) -> dict[str, str]:
    return {"authorization": f"Bearer {account.token}", "workspaceId": account.workspace_id}


@pytest.fixture
async def alice_socket(server: str, alice: Account) -> AsyncIterator[Socket]:
    s = await open_socket(server, auth_of(alice))
    yield s
    await s.ws.close()


async def test_job_progress_streams_from_a_worker_in_another_process(
    api: Api, alice: Account, alice_socket: Socket, worker: None
) -> None:
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(400, "s"))
    op = await alice_socket.subscribe(JOB_PROGRESS, {"id": started["job"]["id"]})
    seen: list[dict[str, Any]] = []
    while True:
        message = await alice_socket.receive()
        if message["type"] == "complete":
            break
        assert message["type"] == "next" and message["id"] == op, message
        assert "errors" not in message["payload"], message
        seen.append(message["payload"]["data"]["jobProgress"])
    assert seen[-1]["status"] == "COMPLETED"
    assert seen[-1]["progress"]["processed"] == 400
    processed = [j["progress"]["processed"] for j in seen]
    assert processed == sorted(processed)
    assert len({p for p in processed if 0 < p < 400}) >= 2  # intermediate batches were streamed


async def test_job_progress_of_a_finished_job_emits_once_and_completes(
    api: Api, alice: Account, alice_socket: Socket, worker: None
) -> None:
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(3, "f"))
    from tests.jobs_support import wait_for

    await wait_for(api, alice, started["job"]["id"])
    await alice_socket.subscribe(JOB_PROGRESS, {"id": started["job"]["id"]})
    first = await alice_socket.receive()
    assert first["payload"]["data"]["jobProgress"]["status"] == "COMPLETED"
    assert (await alice_socket.receive())["type"] == "complete"


async def test_job_progress_of_a_foreign_or_unknown_job_is_an_error(
    api: Api, alice: Account, bob: Account, alice_socket: Socket
) -> None:
    foreign = await start_import(api, bob, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(1, "x"))
    unknown = "Sm9iOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA=="  # Job:0000...
    answers = []
    for job_id in (foreign["job"]["id"], unknown):
        await alice_socket.subscribe(JOB_PROGRESS, {"id": job_id})
        message = await alice_socket.receive()
        answers.append(message)
        if message["type"] == "next":
            assert message["payload"]["data"] is None
            assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            assert (await alice_socket.receive())["type"] == "complete"
        else:
            assert message["type"] == "error"
    assert answers[0]["payload"] == answers[1]["payload"]  # a foreign job is like no job at all


async def test_workspace_events_are_filtered_and_isolated(
    api: Api, alice: Account, bob: Account, server: str, worker: None
) -> None:
    alice_socket = await open_socket(server, auth_of(alice))
    bob_socket = await open_socket(server, auth_of(bob))
    try:
        await alice_socket.subscribe(EVENTS, {"types": ["job.*"]})
        await bob_socket.subscribe(EVENTS, {})
        await asyncio.sleep(0.3)  # the subscriptions are live once Redis confirmed them
        created = await api.data(
            "mutation { createSource(input: {name: \"s1\", displayName: \"S\", provider: API}) { source { id } } }",
            **alice.auth,
        )
        started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(2, "e"))
        event = (await alice_socket.receive())["payload"]["data"]["workspaceEvents"]
        assert event["type"] == "job.created"  # source.* filtered out by type
        assert event["node"]["id"] == started["job"]["id"]
        assert created["createSource"]["source"]["id"]
        with pytest.raises(TimeoutError):
            await bob_socket.receive(timeout=1.5)  # nothing of alice's workspace reaches bob
    finally:
        await alice_socket.ws.close()
        await bob_socket.ws.close()


@pytest.mark.parametrize("payload", [
    {},
    {"authorization": "Bearer not-a-token"},
    {"apiKey": "cg_not_a_key"},
])
async def test_bad_credentials_close_the_socket_with_4403(server: str, payload: dict[str, str]) -> None:
    ws = await connect(server, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_foreign_workspace_in_connection_init_is_refused(server: str, alice: Account, bob: Account) -> None:
    ws = await connect(server, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {
        "authorization": f"Bearer {alice.token}", "workspaceId": bob.workspace_id}}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_ctxgraph_import_uploads_follows_and_reports(
    api: Api, alice: Account, server: str, worker: None, tmp_path: Path
) -> None:
    created = await api.data(
        "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
        {"input": {"name": "cli", "scopes": ["contacts:read", "contacts:write", "jobs:read", "jobs:write", "sources:read"]}},
        **alice.auth,
    )
    await api.data("mutation { createSource(input: {name: \"cli_src\", displayName: \"CLI\", provider: API}) { source { id } } }",
                   **alice.auth)
    file = tmp_path / "people.csv"
    file.write_text("ref,name,email\n" + "".join(f"p{i},Person {i},p{i}@example.com\n" for i in range(120)) + "bad,,nope\n")
    env = {**os.environ, "CTXGRAPH_API_KEY": created["createApiKey"]["secret"]}
    process = await asyncio.create_subprocess_exec(
        CTXGRAPH, "import", str(file), "--target", "contacts", "--adapter", "csv", "--source", "cli_src",
        "--mapping", json.dumps({"ref": "remoteId", "name": "fullName", "email": "email"}),
        "--url", server.replace("ws://", "http://"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    summary = json.loads(lines[0])
    assert summary["status"] == "COMPLETED" and summary["result"]["created"] == 120 and summary["result"]["failed"] == 1
    assert lines[1].startswith("failed item 120 (bad):")
    assert "COMPLETED" in stderr.decode()  # the progress bar's last state
