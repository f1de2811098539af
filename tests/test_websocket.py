"""graphql-transport-ws against a real uvicorn server: authentication in connection_init,
the subprotocol, and the allowed origins."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import Account, Api

PROTOCOL = "graphql-transport-ws"


@pytest.fixture(scope="module")
def server(live_server: str) -> str:
    return live_server.replace("http://", "ws://") + "/graphql"


async def handshake(url: str, payload: dict[str, Any] | None, **kwargs: Any) -> tuple[Any, dict[str, Any] | None]:
    ws = await connect(url, subprotocols=[PROTOCOL], **kwargs)
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    try:
        return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))
    except ConnectionClosed:
        return ws, None


async def test_token_in_connection_init_runs_operations_as_that_user(server: str, alice: Account) -> None:
    ws, ack = await handshake(server, {"authorization": f"Bearer {alice.token}", "workspaceId": alice.workspace_id})
    assert ack == {"type": "connection_ack"}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { user { email } } workspace { name } }"}}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first == {"id": "1", "type": "next", "payload": {"data": {"viewer": {"user": {"email": alice.email}},
                                                                       "workspace": {"name": "Alice Co"}}}}
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"id": "1", "type": "complete"}
    await ws.send(json.dumps({"type": "ping"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
    await ws.close()


async def test_api_key_in_connection_init(server: str, api: Api, alice: Account) -> None:
    secret = (await api.data('mutation { createApiKey(input: {name: "ws", scopes: ["sources:read"]}) { secret } }',
                             **alice.auth))["createApiKey"]["secret"]
    ws, ack = await handshake(server, {"apiKey": secret})
    assert ack == {"type": "connection_ack"}
    await ws.close()


async def test_connection_params_are_read_in_any_case_and_under_the_header_names(server: str, api: Api, alice: Account) -> None:
    """As GraphiQL's headers editor sends them: {"Authorization": ...}, {"X-API-Key": ...}."""
    secret = (await api.data('mutation { createApiKey(input: {name: "ws2", scopes: ["sources:read"]}) { secret } }',
                             **alice.auth))["createApiKey"]["secret"]
    for payload in ({"Authorization": f"Bearer {alice.token}", "X-Workspace-Id": alice.workspace_id},
                    {"X-API-Key": secret}, {"APIKEY": secret}):
        ws, ack = await handshake(server, payload)
        assert ack == {"type": "connection_ack"}, payload
        await ws.close()


@pytest.mark.parametrize("payload", [
    {},
    {"apiKey": 12345},
    {"authorization": "Bearer not-a-token"},
    {"apiKey": "cgk_unknown"},
    {"authorization": "Basic abc"},
])
async def test_bad_credentials_close_the_socket_with_4403(server: str, payload: dict[str, Any]) -> None:
    ws, ack = await handshake(server, payload)
    assert ack is None
    await ws.wait_closed()
    assert ws.close_code == 4403


async def test_a_foreign_workspace_is_refused(server: str, alice: Account, bob: Account) -> None:
    ws, ack = await handshake(server, {"authorization": f"Bearer {alice.token}", "workspaceId": bob.workspace_id})
    assert ack is None
    await ws.wait_closed()
    assert ws.close_code == 4403


async def test_revoked_key_is_refused(server: str, api: Api, alice: Account) -> None:
    made = (await api.data('mutation { createApiKey(input: {name: "gone", scopes: ["*"]}) { secret apiKey { id } } }',
                           **alice.auth))["createApiKey"]
    await api.data("mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { revokedAt } } }", {"id": made["apiKey"]["id"]},
                   **alice.auth)
    ws, ack = await handshake(server, {"apiKey": made["secret"]})
    assert ack is None
    await ws.wait_closed()
    assert ws.close_code == 4403


async def test_operations_before_ack_close_with_4401(server: str) -> None:
    ws = await connect(server, subprotocols=[PROTOCOL])
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}))
    await ws.wait_closed()
    assert ws.close_code == 4401


async def test_only_graphql_transport_ws_is_spoken(server: str) -> None:
    ws = await connect(server, subprotocols=["graphql-ws"])
    await ws.wait_closed()
    assert ws.close_code == 4406


async def test_cross_origin_pages_are_refused_unless_allowed(server: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(server, subprotocols=[PROTOCOL], origin="https://evil.example")
    assert refused.value.response.status_code == 403
    same = await connect(server, subprotocols=[PROTOCOL], origin=server.replace("ws://", "http://").removesuffix("/graphql"))
    await same.close()


async def test_operations_over_a_socket_count_against_the_rate_limit(settings: Any, alice: Account) -> None:
    """Otherwise a socket would be a way around the limit (e.g. to guess passwords with login)."""
    from dataclasses import replace

    from tests.conftest import early_in_a_window, served

    import uuid

    # A namespace of its own: the limit is not spent by the other tests' requests.
    await asyncio.sleep(early_in_a_window())
    with served(replace(settings, rate_limit_per_minute=4, broker_namespace=f"ws-limit-{uuid.uuid4().hex}")) as base:
        ws, ack = await handshake(base.replace("http://", "ws://") + "/graphql",
                                  {"authorization": f"Bearer {alice.token}"})
        assert ack == {"type": "connection_ack"}
        replies = []
        for i in range(5):
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": "{ __typename }"}}))
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            if replies[-1]["type"] == "next":
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "complete"
        assert [r["type"] for r in replies] == ["next", "next", "next", "next", "error"]
        assert replies[-1]["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        await ws.close()
