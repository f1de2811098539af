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
from datetime import UTC, datetime, timedelta
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
    """An API process issuing 2-second access tokens, pinging and re-authenticating sockets every
    second, allowing 2 operations per socket."""
    with serving(settings, CTXGRAPH_ACCESS_TOKEN_TTL="2", CTXGRAPH_WS_KEEPALIVE_SECONDS="1",
                 CTXGRAPH_WS_AUTH_RECHECK_SECONDS="1", CTXGRAPH_MAX_SUBSCRIPTIONS="2") as url:
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


async def test_subscribers_of_one_job_share_events_but_get_their_own_selection(
    api: Api, alice: Account, server: str, worker: None
) -> None:
    """The server executes each event once per distinct (operation, variables, credential): two
    documents and two credentials on one job must still each get exactly what they asked for."""
    secret, _ = await api_key(api, alice, "watcher", ["jobs:read"])
    full, short, keyed = (await open_socket(server, auth_of(alice)), await open_socket(server, auth_of(alice)),
                          await open_socket(server, {"apiKey": secret}))
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                 data=contacts_payload(300, "sh"))
    job_id = started["job"]["id"]
    selections = {full: JOB_PROGRESS,
                  short: "subscription($id: ID!) { jobProgress(id: $id) { status progress { processed } } }",
                  keyed: "subscription($id: ID!) { jobProgress(id: $id) { id status } }"}
    for socket_, query in selections.items():
        await socket_.subscribe(query, {"id": job_id})

    async def stream(socket_: Socket) -> list[dict[str, Any]]:
        seen = []
        while (message := await socket_.receive())["type"] == "next":
            assert "errors" not in message["payload"], message
            seen.append(message["payload"]["data"]["jobProgress"])
        assert message["type"] == "complete"
        await socket_.ws.close()
        return seen

    got_full, got_short, got_keyed = await asyncio.gather(stream(full), stream(short), stream(keyed))
    assert got_full[-1]["status"] == got_short[-1]["status"] == got_keyed[-1]["status"] == "COMPLETED"
    assert got_full[-1]["progress"]["processed"] == got_short[-1]["progress"]["processed"] == 300
    assert all(set(j) == set(got_full[0]) for j in got_full) and "createdAt" in got_full[0]
    assert all(set(j) == {"status", "progress"} and set(j["progress"]) == {"processed"} for j in got_short)
    assert all(j == {"id": job_id, "status": j["status"]} for j in got_keyed)


async def test_every_operation_of_a_shared_event_gets_it_under_its_own_id_and_a_laggard_keeps_order(
    api: Api, alice: Account, server: str, worker: None
) -> None:
    """Sockets following one job with one document share each event's `next` message, encoded
    once; each operation must still get it under its own id, then its own `complete`, and a
    socket that reads nothing until the others are done gets the same events in order."""
    two_ops, other = await open_socket(server, auth_of(alice)), await open_socket(server, auth_of(alice))
    laggard = Socket(await connect(server, subprotocols=[PROTOCOL], max_queue=1))  # type: ignore[list-item]
    await laggard.ws.send(json.dumps({"type": "connection_init", "payload": auth_of(alice)}))
    assert (await laggard.receive())["type"] == "connection_ack"
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(300, "op"))
    variables = {"id": started["job"]["id"]}
    ops = {socket_: [await socket_.subscribe(JOB_PROGRESS, variables) for _ in range(n)]
           for socket_, n in ((two_ops, 2), (other, 1), (laggard, 1))}

    async def stream(socket_: Socket) -> dict[str, list[dict[str, Any]]]:
        """Each operation's events, checking every raw message."""
        seen: dict[str, list[dict[str, Any]]] = {op: [] for op in ops[socket_]}
        completed: set[str] = set()
        while completed != set(seen):
            raw = await asyncio.wait_for(socket_.ws.recv(), 30)
            assert isinstance(raw, str)  # text frames, as the protocol says
            message = json.loads(raw)
            assert message["id"] in seen and message["id"] not in completed, message
            if message["type"] == "complete":
                assert message == {"id": message["id"], "type": "complete"}
                assert seen[message["id"]][-1]["status"] == "COMPLETED"  # the terminal state, then complete
                completed.add(message["id"])
                continue
            assert message["type"] == "next" and message["payload"].keys() == {"data"}, message
            seen[message["id"]].append(message["payload"]["data"]["jobProgress"])
        await socket_.ws.close()
        return seen

    readers = await asyncio.gather(stream(two_ops), stream(other))
    streams = {op: jobs for reader in readers for op, jobs in reader.items()} | await stream(laggard)
    assert len(streams) == 4
    shortest = min(streams.values(), key=len)  # subscribed last: what it got, the others got too
    assert max(len(jobs) for jobs in streams.values()) >= 3  # progress was streamed, not only the final state
    for jobs in streams.values():
        assert jobs[-len(shortest):] == shortest  # the same events, in the same order
        assert jobs[-1]["status"] == "COMPLETED" and jobs[-1]["progress"]["processed"] == 300
        processed = [j["progress"]["processed"] for j in jobs]
        assert processed == sorted(processed)


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


LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { accessToken userErrors { message } } }"""
CREATE_KEY = """mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }"""


async def closed_with(ws: ClientConnection, timeout: float) -> int | None:
    """The close code the server sends within `timeout` seconds (answering its pings meanwhile)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                if json.loads(await ws.recv()).get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
    return closed.value.rcvd.code if closed.value.rcvd else None


async def api_key(api: Api, account: Account, name: str, scopes: list[str], **extra: Any) -> tuple[str, str]:
    created = (await api.data(CREATE_KEY, {"input": {"name": name, "scopes": scopes, **extra}},
                              **account.auth))["createApiKey"]
    return created["secret"], created["apiKey"]["id"]


async def test_the_socket_closes_with_4403_when_its_access_token_expires(strict_server: str, alice: Account) -> None:
    http_url = strict_server.replace("ws://", "http://")
    login = httpx.post(http_url, json={"query": LOGIN, "variables": {"email": alice.email, "password": alice.password}})
    token = login.json()["data"]["login"]["accessToken"]  # lives 2 seconds
    opened = time.monotonic()
    socket_ = await open_socket(strict_server, {"authorization": f"Bearer {token}", "workspaceId": alice.workspace_id})
    await socket_.subscribe(EVENTS, {})
    assert await closed_with(socket_.ws, 10) == 4403
    assert 1.0 < time.monotonic() - opened < 6


async def test_revoking_or_rotating_an_api_key_closes_its_sockets_at_once(
    api: Api, alice: Account, server: str
) -> None:
    """`server` re-authenticates only every minute: the revocation reaches it over Redis."""
    revoked_secret, revoked_id = await api_key(api, alice, "revoked", ["jobs:read"])
    rotated_secret, rotated_id = await api_key(api, alice, "rotated", ["jobs:read"])
    kept_secret, _ = await api_key(api, alice, "kept", ["jobs:read"])
    revoked = await open_socket(server, {"apiKey": revoked_secret})
    rotated = await open_socket(server, {"apiKey": rotated_secret})
    kept = await open_socket(server, {"apiKey": kept_secret})
    try:
        await api.data("mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { revokedAt } } }", {"id": revoked_id},
                       **alice.auth)
        await api.data("mutation($id: ID!) { rotateApiKey(id: $id) { secret } }", {"id": rotated_id}, **alice.auth)
        assert await closed_with(revoked.ws, 5) == 4403
        assert await closed_with(rotated.ws, 5) == 4403
        await kept.ws.send(json.dumps({"type": "ping"}))  # another key of the workspace is untouched
        assert (await kept.receive(timeout=5))["type"] == "pong"
    finally:
        await kept.ws.close()


async def test_an_api_key_socket_closes_when_the_key_expires(api: Api, alice: Account, server: str) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    secret, _ = await api_key(api, alice, "short", ["jobs:read"], expiresAt=expires)
    socket_ = await open_socket(server, {"apiKey": secret})
    assert await closed_with(socket_.ws, 10) == 4403


async def test_a_removed_member_is_noticed_by_the_periodic_reauthentication(
    api: Api, alice: Account, strict_server: str
) -> None:
    """Nothing is announced when a member is removed: the re-authentication every second notices."""
    from tests.conftest import sign_up

    email = f"leaver-{uuid.uuid4().hex[:8]}@example.com"
    invite = "mutation($email: String!) { inviteMember(input: {email: $email, role: VIEWER}) { member { id } invitationToken } }"
    invited = (await api.data(invite, {"email": email}, **alice.auth))["inviteMember"]
    member_id = invited["member"]["id"]
    leaver = await sign_up(api, email=email, invitation_token=invited["invitationToken"])
    socket_ = await open_socket(strict_server, auth_of(leaver) | {"workspaceId": alice.workspace_id})
    await api.data("mutation($id: ID!) { removeMember(id: $id) { deletedId } }", {"id": member_id}, **alice.auth)
    assert await closed_with(socket_.ws, 5) == 4403


async def test_the_server_pings_and_answers_pings(strict_server: str, alice: Account) -> None:
    ws = await connect(strict_server, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    try:
        await ws.send(json.dumps({"type": "connection_init", "payload": auth_of(alice)}))
        ack = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(ack, str) and json.loads(ack)["type"] == "connection_ack"  # text frames, as the protocol says
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] == "ping"  # every second on this server
        await ws.send(json.dumps({"type": "pong"}))
    finally:
        await ws.close()


async def test_operations_over_the_per_socket_cap_get_an_error(strict_server: str, alice: Account) -> None:
    socket_ = await open_socket(strict_server, auth_of(alice))
    try:
        first = await socket_.subscribe(EVENTS, {})
        await socket_.subscribe(EVENTS, {"types": ["job.*"]})
        third = await socket_.subscribe(EVENTS, {})
        refused = await socket_.receive(timeout=10)
        assert refused == {"id": third, "type": "error", "payload": [{"message": "Subscription limit reached"}]}
        await socket_.ws.send(json.dumps({"id": first, "type": "complete"}))  # frees a place
        await asyncio.sleep(0.3)
        fourth = await socket_.subscribe("subscription($id: ID!) { jobProgress(id: $id) { id } }", {"id": "bad"})
        answer = await socket_.receive(timeout=10)
        assert answer["id"] == fourth and answer["type"] in ("next", "error")  # accepted and answered
        assert "Subscription limit reached" not in json.dumps(answer)
    finally:
        await socket_.ws.close()
