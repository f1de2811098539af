"""Documents through the GraphQL API: content and extraction, dedup, versions, links, soft
delete, url fetching by a real worker against a local HTTP server, isolation and scopes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.config import Settings
from app.jobs.worker import start_in_process
from tests.conftest import Account, Api
from tests.test_records import make, make_type

ERRORS = "userErrors { field message code }"
DOC = "id title contentType url content contentHash status error tags metadata version deletedAt"
CREATE = f"mutation($input: CreateDocumentInput!) {{ createDocument(input: $input) {{ document {{ {DOC} }} deduplicated {ERRORS} }} }}"
UPDATE = f"mutation($id: ID!, $input: UpdateDocumentInput!) {{ updateDocument(id: $id, input: $input) {{ document {{ {DOC} }} {ERRORS} }} }}"
GET = f"query($id: ID!) {{ node(id: $id) {{ ... on Document {{ {DOC} versions {{ totalCount edges {{ node {{ version contentHash title }} }} }} linkedNodes {{ id }} }} }} }}"
LINK = f"mutation($d: ID!, $n: ID!) {{ linkDocument(documentId: $d, nodeId: $n) {{ document {{ id }} {ERRORS} }} }}"
UNLINK = f"mutation($d: ID!, $n: ID!) {{ unlinkDocument(documentId: $d, nodeId: $n) {{ document {{ id }} {ERRORS} }} }}"


async def create(api: Api, who: Account, **input_: Any) -> dict[str, Any]:
    return (await api.data(CREATE, {"input": input_}, **who.auth))["createDocument"]


async def test_content_extraction_and_dedup(api: Api, alice: Account) -> None:
    out = await create(api, alice, title="Notes", content="Hello  world\r\n\r\n\r\n\r\nSecond   line  ", tags=["a", "a", "b"],
                       metadata={"k": 1})
    assert out["userErrors"] == [] and out["deduplicated"] is False
    doc = out["document"]
    assert doc["content"] == "Hello world\n\nSecond line"
    assert doc["status"] == "READY" and doc["version"] == 1 and doc["tags"] == ["a", "b"] and len(doc["contentHash"]) == 64
    # the same normalised text again: the existing document, marked deduplicated
    again = await create(api, alice, title="Copy", content="Hello world\n\nSecond line")
    assert again["deduplicated"] is True and again["document"]["id"] == doc["id"] and again["document"]["title"] == "Notes"
    html = await create(api, alice, title="Page", contentType="text/html", content=(
        "<html><head><title>t</title><style>p{color:red}</style><script>alert(1)</script></head>"
        "<body><h1>Big &amp; bold</h1><p>First <b>para</b>.</p><ul><li>one</li><li>two</li></ul></body></html>"))
    assert html["document"]["content"] == "Big & bold\n\nFirst para.\n\none\n\ntwo"
    md = await create(api, alice, title="Md", contentType="text/markdown", content="# Title\n\nSome **bold** [link](http://x.y) `code`")
    assert md["document"]["content"] == "Title\n\nSome bold link code"


async def test_input_refusals(api: Api, alice: Account) -> None:
    cases = [
        ({"title": "t"}, ["input", "content"], "INVALID"),
        ({"title": "t", "content": "x", "url": "https://example.com"}, ["input", "content"], "INVALID"),
        ({"title": "t", "url": "file:///etc/passwd"}, ["input", "url"], "INVALID"),
        ({"title": "t", "url": "ftp://example.com/x"}, ["input", "url"], "INVALID"),
        ({"title": " ", "content": "x"}, ["input", "title"], "REQUIRED"),
        ({"title": "t", "content": "x", "contentType": "application/pdf"}, ["input", "contentType"], "INVALID"),
        ({"title": "t", "content": "   "}, ["input", "content"], "REQUIRED"),
        ({"title": "t", "content": "x", "metadata": [1]}, ["input", "metadata"], "INVALID"),
        ({"title": "t", "content": "x", "linkTo": ["UmVjb3JkOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA=="]}, ["input", "linkTo", "0"], "NOT_FOUND"),
        ({"title": "t", "content": "x", "authorId": "Q29udGFjdDowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA="}, ["input", "authorId"], "NOT_FOUND"),
    ]
    for input_, field, code in cases:
        out = await create(api, alice, **input_)
        assert out["document"] is None, input_
        assert [(e["field"], e["code"]) for e in out["userErrors"]][:1] == [(field, code)], (input_, out)
    listed = await api.data("{ documents { totalCount } }", **alice.auth)
    assert listed["documents"]["totalCount"] == 0


async def test_versions_updates_and_soft_delete(api: Api, alice: Account) -> None:
    doc = (await create(api, alice, title="Plan", content="Version one of the plan"))["document"]
    meta = (await api.data(UPDATE, {"id": doc["id"], "input": {"title": "Plan B", "tags": ["x"], "metadata": {"a": 1}}}, **alice.auth))["updateDocument"]
    assert meta["document"]["version"] == 1 and meta["document"]["title"] == "Plan B" and meta["document"]["tags"] == ["x"]
    new = (await api.data(UPDATE, {"id": doc["id"], "input": {"content": "Version two of the plan"}}, **alice.auth))["updateDocument"]
    assert new["userErrors"] == [] and new["document"]["version"] == 2 and new["document"]["contentHash"] != doc["contentHash"]
    same = (await api.data(UPDATE, {"id": doc["id"], "input": {"content": "Version two   of the plan"}}, **alice.auth))["updateDocument"]
    assert same["document"]["version"] == 2
    got = (await api.data(GET, {"id": doc["id"]}, **alice.auth))["node"]
    assert [e["node"] for e in got["versions"]["edges"]] == [
        {"version": 2, "contentHash": new["document"]["contentHash"], "title": "Plan B"},
        {"version": 1, "contentHash": doc["contentHash"], "title": "Plan"},
    ]
    other = (await create(api, alice, title="Other", content="Something else"))["document"]
    clash = (await api.data(UPDATE, {"id": other["id"], "input": {"content": "Version two of the plan"}}, **alice.auth))["updateDocument"]
    assert clash["userErrors"][0]["code"] == "DUPLICATE"
    deleted = await api.data(f"mutation($id: ID!) {{ deleteDocument(id: $id) {{ document {{ deletedAt }} {ERRORS} }} }}", {"id": doc["id"]}, **alice.auth)
    assert deleted["deleteDocument"]["document"]["deletedAt"]
    listed = await api.data("{ documents { edges { node { title } } } all: documents(filter: {includeDeleted: true}) { totalCount } }", **alice.auth)
    assert [e["node"]["title"] for e in listed["documents"]["edges"]] == ["Other"] and listed["all"]["totalCount"] == 2
    again = (await api.data(UPDATE, {"id": doc["id"], "input": {"title": "x"}}, **alice.auth))["updateDocument"]
    assert again["userErrors"][0]["code"] == "NOT_FOUND"
    # its content is free again once the document is deleted
    reborn = await create(api, alice, title="Plan again", content="Version two of the plan")
    assert reborn["deduplicated"] is False


async def test_filters_and_order(api: Api, alice: Account) -> None:
    for title, tags in (("b doc", ["red"]), ("a doc", ["blue", "red"]), ("c doc", [])):
        await create(api, alice, title=title, content=f"text of {title}", tags=tags)
    data = await api.data("""{ byTitle: documents(orderBy: [{field: TITLE, direction: ASC}]) { edges { node { title } } }
        newest: documents { edges { node { title } } }
        red: documents(filter: {tags: {eq: "red"}}, orderBy: [{field: TITLE, direction: ASC}]) { edges { node { title } } }
        ready: documents(filter: {status: [READY], title: {startsWith: "C"}}) { totalCount } }""", **alice.auth)
    assert [e["node"]["title"] for e in data["byTitle"]["edges"]] == ["a doc", "b doc", "c doc"]
    assert [e["node"]["title"] for e in data["newest"]["edges"]] == ["c doc", "a doc", "b doc"]
    assert [e["node"]["title"] for e in data["red"]["edges"]] == ["a doc", "b doc"]
    assert data["ready"]["totalCount"] == 1


async def test_links_to_any_node(api: Api, alice: Account) -> None:
    type_id = await make_type(api, alice, "deal", [{"name": "title", "fieldType": "STRING"}])
    record = await make(api, alice, type_id, {"title": "Big deal"})
    contact = await api.data('mutation { createContact(input: {fullName: "Ann Author", email: "ann@example.com"}) { contact { id } } }', **alice.auth)
    contact_id = contact["createContact"]["contact"]["id"]
    doc = (await create(api, alice, title="Contract", content="Terms", linkTo=[record["id"]], authorId=contact_id))["document"]
    assert (await api.data(LINK, {"d": doc["id"], "n": contact_id}, **alice.auth))["linkDocument"]["userErrors"] == []
    assert (await api.data(LINK, {"d": doc["id"], "n": contact_id}, **alice.auth))["linkDocument"]["userErrors"] == []
    self_link = (await api.data(LINK, {"d": doc["id"], "n": doc["id"]}, **alice.auth))["linkDocument"]
    assert self_link["userErrors"][0]["code"] == "INVALID"
    got = await api.data("""query($d: ID!, $r: ID!) {
        d: node(id: $d) { ... on Document { author { fullName } linkedNodes { id __typename } } }
        r: node(id: $r) { ... on Record { documents { totalCount edges { node { title } } } } } }""",
        {"d": doc["id"], "r": record["id"]}, **alice.auth)
    assert got["d"]["author"] == {"fullName": "Ann Author"}
    assert {n["__typename"] for n in got["d"]["linkedNodes"]} == {"Record", "Contact"}
    assert got["r"]["documents"]["edges"] == [{"node": {"title": "Contract"}}]
    people = await make_type(api, alice, "owned", [{"name": "owner", "fieldType": "REFERENCE"}])
    await make(api, alice, people, {"owner": contact_id}, name="Owned thing")
    await make(api, alice, people, {}, name="Unowned thing")
    of_contact = await api.data("""query($c: ID!) { node(id: $c) { ... on Contact {
        documents { edges { node { title } } } records { edges { node { name } } } } } }""", {"c": contact_id}, **alice.auth)
    assert of_contact["node"] == {"documents": {"edges": [{"node": {"title": "Contract"}}]},
                                  "records": {"edges": [{"node": {"name": "Owned thing"}}]}}
    assert (await api.data(UNLINK, {"d": doc["id"], "n": record["id"]}, **alice.auth))["unlinkDocument"]["userErrors"] == []
    got = await api.data("query($r: ID!) { node(id: $r) { ... on Record { documents { totalCount } } } }", {"r": record["id"]}, **alice.auth)
    assert got["node"]["documents"]["totalCount"] == 0
    # relationships between a record, a document and a contact use the same mutations
    rel = await api.data("""mutation($s: ID!, $t: ID!) { createRelationship(input: {sourceId: $s, targetId: $t, kind: "about"}) {
        relationship { source { id } target { id } } userErrors { code message } } }""", {"s": doc["id"], "t": record["id"]}, **alice.auth)
    assert rel["createRelationship"]["userErrors"] == []
    edges = await api.data("query($r: ID!) { node(id: $r) { ... on Record { relationships { edges { node { kind source { id } } } } } } }",
                           {"r": record["id"]}, **alice.auth)
    assert edges["node"]["relationships"]["edges"] == [{"node": {"kind": "about", "source": {"id": doc["id"]}}}]


async def test_isolation_and_scopes(api: Api, alice: Account, bob: Account) -> None:
    doc = (await create(api, alice, title="Secret", content="alice only"))["document"]
    seen = await api.data("query($id: ID!) { node(id: $id) { id } documents { totalCount } }", {"id": doc["id"]}, **bob.auth)
    assert seen == {"node": None, "documents": {"totalCount": 0}}
    # the same content in bob's workspace is his own document, not a dedup of alice's
    own = await create(api, bob, title="Mine", content="alice only")
    assert own["deduplicated"] is False and own["document"]["id"] != doc["id"]
    for query, variables in ((UPDATE, {"id": doc["id"], "input": {"title": "x"}}),
                             (f"mutation($id: ID!) {{ deleteDocument(id: $id) {{ {ERRORS} }} }}", {"id": doc["id"]}),
                             (LINK, {"d": own["document"]["id"], "n": doc["id"]})):
        body = await api.data(query, variables, **bob.auth)
        assert next(iter(body.values()))["userErrors"][0]["code"] == "NOT_FOUND"
    secret = (await api.data('mutation { createApiKey(input: {name: "r", scopes: ["documents:read"]}) { secret } }', **alice.auth))["createApiKey"]["secret"]
    assert (await api.data("{ documents { totalCount } }", api_key=secret))["documents"]["totalCount"] == 1
    body = await api(CREATE, {"input": {"title": "t", "content": "x"}}, api_key=secret)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    other = (await api.data('mutation { createApiKey(input: {name: "c", scopes: ["records:read"]}) { secret } }', **alice.auth))["createApiKey"]["secret"]
    body = await api("{ documents { totalCount } }", api_key=other)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# ---------------------------------------------------------------- fetching urls


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/page.html":
            self._send(200, "text/html; charset=utf-8", "<html><body><h1>Fetched café</h1><p>From the web</p></body></html>".encode())
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("location", "/page.txt")
            self.end_headers()
        elif path == "/page.txt":
            self._send(200, "text/plain", b"plain fetched text")
        elif path == "/slow":
            time.sleep(2.5)
            with contextlib.suppress(OSError):  # the fetcher has hung up
                self._send(200, "text/plain", b"too late")
        elif path == "/big":
            self._send(200, "text/plain", b"x" * 5000)
        elif path == "/chunked-big":
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"y" * 1000)
        elif path == "/file.pdf":
            self._send(200, "application/pdf", b"%PDF-1.4")
        else:
            self._send(404, "text/plain", b"not here")


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def worker(settings: Settings, app: Any) -> Iterator[None]:
    from app.jobs import documents as fetcher  # declared on the app's broker (see app.jobs.actors)

    limits = fetcher.LIMITS
    fetcher.LIMITS = fetcher.FetchLimits(timeout_seconds=1.0, max_bytes=4000, max_redirects=3)
    handle = start_in_process(settings, threads=2)
    try:
        yield
    finally:
        handle.stop()
        fetcher.LIMITS = limits


async def settle(api: Api, who: Account, doc_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = (await api.data(GET, {"id": doc_id}, **who.auth))["node"]
        if doc["status"] in ("READY", "FAILED") or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.1)


async def test_url_documents_are_fetched_by_the_worker(api: Api, alice: Account, web: str, worker: None) -> None:
    created = await create(api, alice, title="Web page", url=f"{web}/page.html")
    assert created["userErrors"] == [] and created["document"]["status"] in ("PENDING", "PROCESSING", "READY")
    doc = await settle(api, alice, created["document"]["id"])
    assert doc["status"] == "READY", doc
    assert doc["content"] == "Fetched café\n\nFrom the web" and doc["contentType"] == "text/html" and doc["contentHash"]
    assert doc["versions"]["edges"][0]["node"]["contentHash"] == doc["contentHash"]
    redirected = await settle(api, alice, (await create(api, alice, title="r", url=f"{web}/redirect"))["document"]["id"])
    assert (redirected["status"], redirected["content"]) == ("READY", "plain fetched text")
    search = await api.data('{ a: search(query: "fetched") { node { id } } b: search(query: "fetched caf*") { node { id } } }', **alice.auth)
    assert {h["node"]["id"] for h in search["a"]} == {doc["id"], redirected["id"]}
    assert [h["node"]["id"] for h in search["b"]] == [doc["id"]]

    failures = {
        "/missing": "HTTP 404",
        "/slow": "Timed out after 1 s",
        "/big": "larger than 4000 bytes",
        "/chunked-big": "larger than 4000 bytes",
        "/file.pdf": "Content type application/pdf is not supported",
    }
    ids = {path: (await create(api, alice, title=path, url=f"{web}{path}"))["document"]["id"] for path in failures}
    for path, reason in failures.items():
        doc = await settle(api, alice, ids[path])
        assert doc["status"] == "FAILED" and reason in doc["error"], (path, doc)
        assert doc["content"] is None
    # a url whose content another document already has fails, naming that document
    dup = await settle(api, alice, (await create(api, alice, title="dup", url=f"{web}/page.txt"))["document"]["id"])
    assert dup["status"] == "FAILED" and redirected["id"] in dup["error"]
    # a new url refetches, as a new version
    moved = (await api.data(UPDATE, {"id": ids["/missing"], "input": {"url": f"{web}/page.html?v=2"}}, **alice.auth))["updateDocument"]
    assert moved["userErrors"] == [] and moved["document"]["status"] == "PENDING"
    assert (await settle(api, alice, ids["/missing"]))["error"].startswith("Same content as document")
