"""Browsers on other origins: CORS preflight and responses, and a real cross-origin fetch from a
page served on another port, in headless Chromium."""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import Account, served, unauthenticated

SPA = "http://localhost:5173"
PREFLIGHT = {
    "origin": SPA, "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-api-key, x-workspace-id, graphql-require-preflight",
}


@pytest.fixture(scope="module")
def cors_server(settings: Settings) -> Iterator[str]:
    with served(replace(settings, cors_origins=(SPA,))) as url:
        yield url


def test_a_preflight_from_an_allowed_origin_is_answered(cors_server: str) -> None:
    response = httpx.options(f"{cors_server}/graphql", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-api-key", "x-workspace-id", "graphql-require-preflight"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers  # credentials are headers, never cookies
    assert int(response.headers["access-control-max-age"]) > 0


def test_a_preflight_from_another_origin_is_refused(cors_server: str) -> None:
    response = httpx.options(f"{cors_server}/graphql", headers={**PREFLIGHT, "origin": "https://evil.example"})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_responses_to_an_allowed_origin_carry_cors_headers_errors_included(cors_server: str, alice: Account) -> None:
    ok = httpx.post(f"{cors_server}/graphql", json={"query": "{ viewer { user { email } } }"},
                    headers={"origin": SPA, "authorization": f"Bearer {alice.token}"})
    assert ok.status_code == 200 and ok.json()["data"]["viewer"]["user"]["email"] == alice.email
    assert ok.headers["access-control-allow-origin"] == SPA
    exposed = {h.strip().lower() for h in ok.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    refused = httpx.post(f"{cors_server}/graphql", json={"query": "{ viewer { user { email } } }"},
                         headers={"origin": SPA, "authorization": "Bearer not-a-token"})
    assert unauthenticated(refused) and refused.headers["access-control-allow-origin"] == SPA  # readable by the page
    other = httpx.post(f"{cors_server}/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_without_cors_origins_no_origin_is_allowed(live_server: str) -> None:
    response = httpx.options(f"{live_server}/graphql", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers


def test_sockets_from_the_cors_origins_are_allowed_by_default(cors_server: str, alice: Account) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def handshake(origin: str) -> Any:
        url = cors_server.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"], origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {alice.token}"}}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    assert asyncio.run(handshake(SPA)) == {"type": "connection_ack"}
    with pytest.raises(InvalidStatus):
        asyncio.run(handshake("https://evil.example"))


# ------------------------------------------------------------------ a real browser


PAGE = """<!doctype html><meta charset="utf-8"><title>spa</title><pre id="out">pending</pre>
<script>
fetch(%(api)s, {method: "POST", headers: {"content-type": "application/json", "authorization": %(auth)s},
                body: JSON.stringify({query: "{ viewer { user { email } } }"})})
  .then(r => r.json().then(body => ({status: r.status, requestId: r.headers.get("x-request-id"), body})))
  .then(result => { document.getElementById("out").textContent = JSON.stringify(result); })
  .catch(error => { document.getElementById("out").textContent = "failed: " + error; });
</script>"""


@contextlib.contextmanager
def page_server() -> Iterator[tuple[str, dict[str, str]]]:
    """An origin of its own (another port) and the pages it serves, by path."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()


def dump_dom(url: str) -> str:
    """The page's DOM once its scripts have run, rendered by headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=90, check=True,
        ).stdout


def browser_text(url: str) -> str:
    """The page's result text once its scripts have run."""
    dom = dump_dom(url)
    start = dom.index('<pre id="out">') + len('<pre id="out">')
    return html.unescape(dom[start:dom.index("</pre>", start)])


def test_a_page_on_another_origin_calls_the_api_in_chromium(settings: Settings, alice: Account) -> None:
    with page_server() as (allowed, pages), page_server() as (stranger, stranger_pages), \
            served(replace(settings, cors_origins=(allowed,))) as api:
        page = PAGE % {"api": json.dumps(f"{api}/graphql"), "auth": json.dumps(f"Bearer {alice.token}")}
        pages["/"] = stranger_pages["/"] = page
        result = json.loads(browser_text(f"{allowed}/"))
        assert result["status"] == 200 and result["body"] == {"data": {"viewer": {"user": {"email": alice.email}}}}
        assert result["requestId"]  # an exposed header the page can read
        assert browser_text(f"{stranger}/").startswith("failed: TypeError")  # the browser keeps the answer from it
