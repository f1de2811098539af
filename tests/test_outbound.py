"""Outbound fetches on a user's behalf reach public addresses only, unless a setting allows more."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app import outbound
from app.config import Settings
from app.jobs.worker import start_in_process
from app.outbound import ForbiddenDestination
from tests.conftest import Account, Api

CREATE = """
mutation($input: CreateDocumentInput!) { createDocument(input: $input) { document { id status } userErrors { code } } }
"""
GET = "query($id: ID!) { node(id: $id) { ... on Document { status error content } } }"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost:8080/x", "http://10.1.2.3/", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0.0.0.0/",
])
async def test_private_destinations_are_refused(url: str) -> None:
    with pytest.raises(ForbiddenDestination, match="is not a public address"):
        async with outbound.async_client(False) as client:
            await client.get(url)
    with pytest.raises(ForbiddenDestination, match="is not a public address"), outbound.client(False) as sync_client:
        sync_client.get(url)


async def test_other_schemes_are_refused_even_when_private_is_allowed() -> None:
    with pytest.raises(ForbiddenDestination, match="Only http and https"), outbound.client(True) as client:
        client.get("ftp://example.com/file")


async def test_public_addresses_pass_the_check() -> None:
    infos = socket.getaddrinfo("93.184.216.34", 80, type=socket.SOCK_STREAM)
    assert outbound.checked_address("93.184.216.34", infos, False) == "93.184.216.34"
    mixed = infos + socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    with pytest.raises(ForbiddenDestination):  # one private address among them is enough
        outbound.checked_address("mixed.example", mixed, False)


async def test_a_name_that_rebinds_cannot_reach_a_private_address(
    live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address for a first look and to the server's
    own loopback afterwards. The connection is made to the address that was checked, at the time
    it is opened, so the private one is never reached; with private networks allowed, the very
    same name reaches the server."""
    port = int(live_server.rsplit(":", 1)[1])
    answers = iter(["93.184.216.34"] + ["127.0.0.1"] * 10)
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            return real(next(answers), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with outbound.client(False, timeout=2) as client:
        with pytest.raises((httpx.ConnectError, httpx.ConnectTimeout)):  # to the public address checked, not here
            client.get(f"http://rebind.example:{port}/healthz")
        with pytest.raises(ForbiddenDestination, match="is not a public address"):
            client.get(f"http://rebind.example:{port}/healthz")
    with outbound.client(True, timeout=2) as client:
        assert client.get(f"http://rebind.example:{port}/healthz").json() == {"status": "ok"}


@pytest.fixture
def strict_worker(settings: Settings, app: Any) -> Iterator[None]:
    handle = start_in_process(replace(settings, fetch_private_networks=False), threads=1)
    try:
        yield
    finally:
        handle.stop()


async def test_a_url_document_on_the_servers_own_network_fails_with_the_reason(
    api: Api, alice: Account, strict_worker: None, live_server: str
) -> None:
    created = (await api.data(CREATE, {"input": {"title": "internal", "url": f"{live_server}/healthz"}},
                              **alice.auth))["createDocument"]
    assert created["userErrors"] == []
    deadline = time.monotonic() + 30
    while True:
        doc = (await api.data(GET, {"id": created["document"]["id"]}, **alice.auth))["node"]
        if doc["status"] in ("READY", "FAILED") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert doc["status"] == "FAILED" and "not a public address" in doc["error"] and doc["content"] is None


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    """A local HTTP server: /big (declares its length), /chunked (no length), /drip (a byte every
    0.2 s for 5 s), /ok (3 MB and a bit, declared)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Files(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path in ("/big", "/ok"):
                body = b"x" * (3 * 1024 * 1024 + 5 if self.path == "/ok" else 5000)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(25 if self.path == "/drip" else 10):
                piece = b"y" if self.path == "/drip" else b"z" * 1000
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if self.path == "/drip":
                    time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_synced_file_is_capped_in_bytes_and_time(file_server: str, tmp_path: Any) -> None:
    """syncSource's fetch (imports.open_sync_file): whole 1 MiB chunks, and a clear failure for a
    file over the byte cap (declared or not) or a download past its deadline."""
    from app.services.imports import CHUNK_BYTES, PayloadError, open_sync_file

    chunks = list(open_sync_file(f"{file_server}/ok", tmp_path, allow_private=True))
    assert [len(c) for c in chunks] == [CHUNK_BYTES] * 3 + [5]  # re-chunked: a CSV header is read from the first
    for path, limit in (("/big", 4000), ("/chunked", 9000)):
        with pytest.raises(PayloadError, match="larger than"):
            list(open_sync_file(f"{file_server}{path}", tmp_path, allow_private=True, max_bytes=limit))
    with pytest.raises(PayloadError, match="took longer than 1 s"):
        list(open_sync_file(f"{file_server}/drip", tmp_path, allow_private=True, deadline_seconds=1))
    (tmp_path / "local.csv").write_bytes(b"a,b\n" * 1000)
    with pytest.raises(PayloadError, match="larger than"):
        list(open_sync_file("local.csv", tmp_path, max_bytes=100))
    assert b"".join(open_sync_file("local.csv", tmp_path)) == b"a,b\n" * 1000
