"""Bad input gets a clean, specific answer: malformed JSON of every kind (bodies, GET parameters,
multipart parts, WebSocket messages) is a 400 in JSON, text PostgreSQL cannot store is
BAD_USER_INPUT naming the argument (nothing written), and oversized headers are 431."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.config import Settings
from tests.conftest import Account, Api, served

GQL = "application/graphql-response+json"
MEDIA_TYPES = (GQL, "application/json")
CREATE = "mutation($input: CreateContactInput!) { createContact(input: $input) { contact { id } userErrors { message } } }"
COUNT = "{ contacts { totalCount } }"
DEEP = "[" * 10_000 + "]" * 10_000
BIG = 123456789012345678901234567890


def body(query: str, variables: str = "{}", extra: str = "") -> bytes:
    return f'{{"query": {json.dumps(query)}, "variables": {variables}{extra}}}'.encode()


MALFORMED = {
    "invalid UTF-8": b'{"query": "{ __typename }", "x": "\xff"}',
    "a UTF-8-encoded surrogate": b'{"query": "{ __typename }", "x": "\xed\xa0\x80"}',
    "a string": b'"x"',
    "null": b"null",
    "a number": b"12",
    "an array (no batching)": b'[{"query": "{ __typename }"}]',
    "variables 10,000 levels deep": body("query($v: JSON) { __typename }", f'{{"v": {DEEP}}}'),
    "variables 65 levels deep": body("query($v: JSON) { __typename }", f'{{"v": {"[" * 63 + "]" * 63}}}'),
    "an integer over 64 bits": body(CREATE, f'{{"input": {{"fullName": "a", "customFields": {{"n": {BIG}}}}}}}'),
    "an integer of 5,000 digits": body("query($v: Float) { __typename }", f'{{"v": {"9" * 5000}}}'),
    "a number beyond a double": body("query($v: Float) { __typename }", '{"v": 1e400}'),
    "NaN": body("query($v: Float) { __typename }", '{"v": NaN}'),
    "variables not an object": body("{ __typename }", '"x"'),
    "operationName not a string": body("{ __typename }", "{}", ', "operationName": 1'),
    "operationName an object": body("{ __typename }", "{}", ', "operationName": {}'),
    "query not a string": b'{"query": 1}',
}


async def post(api: Api, content: bytes, accept: str, account: Account | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", "accept": accept}
    if account is not None:
        headers |= {"authorization": f"Bearer {account.token}", "x-workspace-id": account.workspace_id}
    return await api.http.post("/graphql", content=content, headers=headers)


def assert_request_error(response: httpx.Response, status: int, media: str, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(media)
    payload = response.json()
    assert "data" not in payload, payload
    error = payload["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", payload
    for word in words:
        assert word in error["message"], error["message"]
    return str(error["message"])


async def count(api: Api, account: Account) -> int:
    return int((await api.data(COUNT, **account.auth))["contacts"]["totalCount"])


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("accept", MEDIA_TYPES)
async def test_malformed_json_requests_are_400_in_both_media_types(api: Api, alice: Account, case: str, accept: str) -> None:
    before = await count(api, alice)
    response = await post(api, MALFORMED[case], accept, alice)
    assert_request_error(response, 400, accept)
    assert await count(api, alice) == before


async def test_the_400s_say_what_is_wrong(api: Api) -> None:
    expected = {
        "invalid UTF-8": "UTF-8", "a string": "object", "null": "null", "an array (no batching)": "batching",
        "variables 10,000 levels deep": "64 levels", "an integer over 64 bits": "64-bit",
        "a number beyond a double": "double", "operationName not a string": "operationName",
    }
    for case, word in expected.items():
        assert_request_error(await post(api, MALFORMED[case], GQL), 400, GQL, word)


async def test_get_parameters_follow_the_same_json_policy(api: Api, alice: Account) -> None:
    auth = {"accept": GQL, "authorization": f"Bearer {alice.token}"}
    for variables, word in (("{bad", "JSON"), ("[1]", "object"), (DEEP, "64 levels"), (f'{{"v": {BIG}}}', "64-bit")):
        response = await api.http.get("/graphql", params={"query": "query($v: JSON) { __typename }", "variables": variables},
                                      headers=auth)
        assert_request_error(response, 400, GQL, word)
    search = {"query": "query($q: String!) { search(query: $q) { __typename } }", "variables": json.dumps({"q": "a\x00"})}
    assert_request_error(await api.http.get("/graphql", params=search, headers=auth), 400, GQL, "'q'", "NUL")


IMPORT = "mutation($input: StartImportInput!) { startImport(input: $input) { job { id } userErrors { message } } }"


@pytest.mark.parametrize(("operations", "files_map", "word"), [
    ("{bad", '{"0": ["variables.input.file"]}', "JSON"),
    ("[]", "{}", "batching"),
    (json.dumps({"query": IMPORT, "variables": {"input": {}}})[:-1] + f', "x": {DEEP}}}', "{}", "64 levels"),
    (json.dumps({"query": IMPORT, "variables": {"input": {"target": "CONTACTS", "adapter": "CSV", "file": None}}}),
     '{"0": [1]}', "map"),
    (json.dumps({"query": IMPORT, "variables": {"input": {"target": "CONTACTS", "adapter": "CSV", "file": None}}}),
     '{"0": ["variables.input.target.0"]}', "map"),
])
async def test_multipart_parts_follow_the_same_json_policy(api: Api, alice: Account, operations: str, files_map: str,
                                                          word: str) -> None:
    response = await api.http.post(
        "/graphql", data={"operations": operations, "map": files_map},
        files={"0": ("a.csv", b"fullName\nAda\n", "text/csv")},
        headers={"accept": GQL, "authorization": f"Bearer {alice.token}", "graphql-require-preflight": "1"},
    )
    assert_request_error(response, 400, GQL, word)


NUL, SURROGATE = "a\x00b", "a\ud800b"
HOSTILE_INPUTS = {
    "name with NUL": ({"fullName": NUL}, "'input.fullName'"),
    "name with a lone surrogate": ({"fullName": SURROGATE}, "'input.fullName'"),
    "title": ({"fullName": "a", "title": NUL}, "'input.title'"),
    "tag": ({"fullName": "a", "tags": ["ok", NUL]}, "'input.tags.1'"),
    "customFields value": ({"fullName": "a", "customFields": {"k": {"deep": [NUL]}}}, "'input.customFields.k.deep.0'"),
    "customFields key": ({"fullName": "a", "customFields": {"k" + SURROGATE: 1}}, "'input.customFields' (a key)"),
}


def encoded(variables: dict[str, Any]) -> bytes:
    """JSON as a client writes it: a lone surrogate goes as the escape \\ud800."""
    return json.dumps({"query": CREATE, "variables": variables}, ensure_ascii=True).encode()


@pytest.mark.parametrize("case", list(HOSTILE_INPUTS))
@pytest.mark.parametrize(("accept", "status"), [(GQL, 400), ("application/json", 200)])
async def test_unstorable_text_in_variables_names_the_field_and_writes_nothing(
    api: Api, alice: Account, case: str, accept: str, status: int
) -> None:
    contact, place = HOSTILE_INPUTS[case]
    before = await count(api, alice)
    response = await post(api, encoded({"input": contact}), accept, alice)
    assert_request_error(response, status, accept, "$input", place)
    assert await count(api, alice) == before


LITERALS = {
    "name with NUL": ('createContact(input: {fullName: "a\\u0000b"}) { contact { id } }', "'input.fullName'"),
    "tag": ('createContact(input: {fullName: "a", tags: ["ok", "x\\u0000"]}) { contact { id } }', "'input.tags'"),
    "customFields value": ('createContact(input: {fullName: "a", customFields: {k: "\\u0000"}}) { contact { id } }',
                           "'input.customFields.k'"),
    "search": ('search(query: "\\u0000") { __typename }', "'query'"),
}


@pytest.mark.parametrize("case", list(LITERALS))
@pytest.mark.parametrize(("accept", "status"), [(GQL, 400), ("application/json", 200)])
async def test_unstorable_text_in_literals_names_the_argument_and_writes_nothing(
    api: Api, alice: Account, case: str, accept: str, status: int
) -> None:
    field, place = LITERALS[case]
    operation = "query" if field.startswith("search") else "mutation"
    before = await count(api, alice)
    response = await post(api, json.dumps({"query": f"{operation} {{ {field} }}"}).encode(), accept, alice)
    assert_request_error(response, status, accept, "NUL", place)
    assert await count(api, alice) == before


@pytest.mark.parametrize("literal", [str(BIG), "1e400", "[" * 70 + "]" * 70])
async def test_json_literals_that_cannot_be_stored_are_refused(api: Api, alice: Account, literal: str) -> None:
    before = await count(api, alice)
    query = f'mutation {{ createContact(input: {{fullName: "a", customFields: {{n: {literal}}}}}) {{ contact {{ id }} }} }}'
    response = await post(api, json.dumps({"query": query}).encode(), "application/json", alice)
    assert_request_error(response, 200, "application/json", "JSON")
    assert await count(api, alice) == before


async def test_login_with_a_nul_email_is_bad_input(api: Api) -> None:
    login = "mutation($input: LoginInput!) { login(input: $input) { accessToken } }"
    response = await post(api, json.dumps({"query": login, "variables": {"input": {"email": "a\x00@b.co", "password": "x"}}}).encode(),
                          GQL)
    assert_request_error(response, 400, GQL, "'input.email'", "NUL")


async def test_ids_with_nul_are_bad_input(api: Api, alice: Account) -> None:
    node = json.dumps({"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": "Q29\x00"}}).encode()
    assert_request_error(await post(api, node, GQL, alice), 400, GQL, "'id'", "NUL")


async def test_clean_unicode_still_passes(api: Api, alice: Account) -> None:
    """Emoji arrive as surrogate pairs from ensure_ascii encoders: a pair is a character, not a lone half."""
    response = await post(api, encoded({"input": {"fullName": "Zoë 😀 \\u0000", "tags": ["ü"]}}), GQL, alice)
    assert response.status_code == 200 and response.json()["data"]["createContact"]["userErrors"] == []


# --- WebSocket ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_url(live_server: str) -> str:
    return live_server.replace("http://", "ws://") + "/graphql"


async def subscribe(ws_url: str, account: Account, message: str) -> tuple[dict[str, Any] | None, Any]:
    """The server's answer to `message` after the handshake: (the message, the socket)."""
    ws = await connect(ws_url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {account.token}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
    await ws.send(message)
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 5)), ws
    except ConnectionClosed:
        return None, ws


SEARCH = "query($q: String!) { search(query: $q) { __typename } }"


@pytest.mark.parametrize("variables", ['{"q": "a\\u0000"}', '{"q": "a\\ud800"}'])
async def test_websocket_unstorable_text_gets_an_error_message(ws_url: str, alice: Account, variables: str) -> None:
    message = f'{{"id": "1", "type": "subscribe", "payload": {{"query": {json.dumps(SEARCH)}, "variables": {variables}}}}}'
    answer, ws = await subscribe(ws_url, alice, message)
    assert answer is not None and answer["type"] == "error" and answer["id"] == "1"
    assert answer["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT" and "'q'" in answer["payload"][0]["message"]
    await ws.send(json.dumps({"type": "ping"}))  # the socket lives on
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
    await ws.close()


@pytest.mark.parametrize("message", [
    f'{{"id": "1", "type": "subscribe", "payload": {{"query": "{{ __typename }}", "variables": {{"x": {DEEP}}}}}}}',
    f'{{"id": "1", "type": "subscribe", "payload": {{"query": "{{ __typename }}", "variables": {{"x": {BIG}}}}}}}',
    "[1]",
    '"x"',
])
async def test_websocket_malformed_json_closes_with_4400(ws_url: str, alice: Account, message: str) -> None:
    """The protocol's answer to a message it cannot parse (not an internal error, 1011/1006)."""
    answer, ws = await subscribe(ws_url, alice, message)
    assert answer is None
    await ws.wait_closed()
    assert ws.close_code == 4400


# --- Headers, against uvicorn as `ctxgraph serve` runs it ---------------------------------


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    with served(settings, request.param) as url:
        yield url


@pytest.mark.parametrize(("path", "headers"), [
    ("/graphql", {"x-big": "a" * 1_000_000}),
    ("/graphql", {f"x-h{i}": "v" for i in range(2_000)}),
    ("/graphql", {"x-big": "a" * 17_000}),
    ("/graphql", {f"x-h{i}": "v" for i in range(101)}),
    ("/healthz", {"x-big": "a" * 1_000_000}),
])
def test_oversized_headers_are_431(server: str, path: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post(path, json={"query": "{ __typename }"}, headers={"accept": GQL, **headers})
    assert response.status_code == 431, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_ordinary_headers_pass(server: str) -> None:
    headers = {"accept": GQL, "x-trace": "t" * 2_000, **{f"x-h{i}": "v" * 50 for i in range(80)}}
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}


def test_header_limits_are_settings(settings: Settings) -> None:
    with served(replace(settings, max_headers=200, max_header_bytes=64 * 1024), "httptools") as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/graphql", json={"query": "{ __typename }"},
                               headers={"accept": GQL, "x-big": "a" * 40_000, **{f"x-h{i}": "v" for i in range(150)}})
    assert response.status_code == 200
    assert Settings.from_env({"CTXGRAPH_MAX_HEADERS": "7", "CTXGRAPH_MAX_HEADER_BYTES": "900"}).max_headers == 7


@pytest.mark.parametrize(("payload", "reason"), [
    ({"id": "1", "type": "subscribe", "payload": "{ __typename }"}, "string query"),
    ({"id": "1", "type": "subscribe", "payload": {"query": 1}}, "string query"),
    ({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", "variables": [1]}}, "variables"),
    ({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", "operationName": 7}}, "operationName"),
    ({"id": 1, "type": "subscribe", "payload": {"query": "{ __typename }"}}, "string id"),
    ({"type": "subscribe", "payload": {"query": "{ __typename }"}}, "string id"),
])
async def test_websocket_subscribe_messages_not_of_the_protocol_close_with_4400(
    ws_url: str, alice: Account, payload: dict[str, Any], reason: str,
) -> None:
    answer, ws = await subscribe(ws_url, alice, json.dumps(payload))
    assert answer is None
    await ws.wait_closed()
    assert ws.close_code == 4400 and reason in ws.close_reason


@pytest.mark.parametrize(("document", "code"), [
    ("{ __typename", "BAD_USER_INPUT"),  # a syntax error
    ("{ " + "__typename " * 25_000 + "}", "QUERY_TOO_COMPLEX"),  # past the token limit, refused unparsed
])
async def test_websocket_documents_refused_before_parsing_get_an_error_message(
    ws_url: str, alice: Account, document: str, code: str,
) -> None:
    message = json.dumps({"id": "7", "type": "subscribe", "payload": {"query": document}})
    answer, ws = await subscribe(ws_url, alice, message)
    assert answer is not None and answer["type"] == "error" and answer["id"] == "7", answer
    assert answer["payload"][0]["extensions"]["code"] == code
    await ws.send(json.dumps({"id": "7", "type": "subscribe", "payload": {"query": "{ __typename }"}}))  # the id is free again
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"id": "7", "type": "next", "payload": {"data": {"__typename": "Query"}}}
    await ws.close()


async def test_a_client_that_leaves_before_its_body_is_read_is_not_an_error(app: Any, api: Api, alice: Account) -> None:
    """A load generator's closing connections, a browser tab closed mid-upload: the request ends
    quietly (nothing logged as an exception, nothing sent), and the next one is answered."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/graphql", "raw_path": b"/graphql", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"40"), (b"host", b"test"),
                         (b"authorization", f"Bearer {alice.token}".encode()), (b"x-workspace-id", alice.workspace_id.encode())],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    await app(scope, receive, send)
    assert [m for m in sent if m["type"] == "http.response.start" and m["status"] >= 500] == []
    assert await count(api, alice) == 0
