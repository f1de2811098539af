"""Outbound fetches on a user's behalf reach public addresses only, unless a setting allows more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.jobs.worker import start_in_process
from app.outbound import ForbiddenDestination, async_guard, sync_guard
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
    request = httpx.Request("GET", url)
    with pytest.raises(ForbiddenDestination):
        await async_guard(False)(request)
    with pytest.raises(ForbiddenDestination):
        sync_guard(False)(request)
    await async_guard(True)(request)  # the setting lets them through


async def test_other_schemes_are_refused_even_when_private_is_allowed() -> None:
    with pytest.raises(ForbiddenDestination, match="Only http and https"):
        sync_guard(True)(httpx.Request("GET", "ftp://example.com/file"))


async def test_public_literal_addresses_pass() -> None:
    await async_guard(False)(httpx.Request("GET", "http://93.184.216.34/"))


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
