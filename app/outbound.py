"""Outbound HTTP made on a user's behalf (url documents, FILE sources with a URL).

Only http(s), and, unless CTXGRAPH_FETCH_PRIVATE_NETWORKS is on, only to public addresses: a
user must not make the server read its own network (loopback, private ranges, link-local cloud
metadata endpoints...). Every hop of a redirect chain is checked. The check resolves the name
itself, so a name that resolves differently a moment later (DNS rebinding) is not covered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import httpx


class ForbiddenDestination(httpx.HTTPError):
    """A url the server will not fetch for a user; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _refuse_private(host: str, addresses: list[str]) -> None:
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            raise ForbiddenDestination(f"{host} is not a public address")  # which one stays unsaid


def _target(request: httpx.Request) -> tuple[str, int]:
    if request.url.scheme not in ("http", "https"):
        raise ForbiddenDestination(f"Only http and https urls can be fetched, not {request.url.scheme}")
    return request.url.host, request.url.port or (443 if request.url.scheme == "https" else 80)


def sync_guard(allow_private: bool) -> Callable[[httpx.Request], None]:
    """An httpx `request` event hook for a sync client."""

    def check(request: httpx.Request) -> None:
        host, port = _target(request)
        if not allow_private:
            _refuse_private(host, [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)])

    return check


def async_guard(allow_private: bool) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx `request` event hook for an async client."""

    async def check(request: httpx.Request) -> None:
        host, port = _target(request)
        if not allow_private:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            _refuse_private(host, [info[4][0] for info in infos])

    return check
