"""Outbound HTTP made on a user's behalf (url documents, FILE sources with a URL).

Only http(s), and, unless CTXGRAPH_FETCH_PRIVATE_NETWORKS is on, only to public addresses: a
user must not make the server read its own network (loopback, private ranges, link-local cloud
metadata endpoints...). The check is made where the connection is opened, on every hop of a
redirect chain: the name is resolved once, the addresses checked, and the connection made to a
checked address, so a name that resolves elsewhere a moment later (DNS rebinding) gains nothing.
TLS still verifies the certificate against the name. Proxies from the environment are not used:
the address checked must be the address connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class ForbiddenDestination(httpx.HTTPError):
    """A url the server will not fetch for a user; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def checked_address(host: str, infos: list[Any], allow_private: bool) -> str:
    """The address to connect to, of those `host` resolved to, once all of them are allowed."""
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise ForbiddenDestination(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
                raise ForbiddenDestination(f"{host} is not a public address")  # which one stays unsaid
    return addresses[0]


def _scheme(request: httpx.Request) -> None:
    if request.url.scheme not in ("http", "https"):
        raise ForbiddenDestination(f"Only http and https urls can be fetched, not {request.url.scheme}")


class _Checked(httpcore.NetworkBackend):
    def __init__(self, allow_private: bool) -> None:
        self._inner, self._allow_private = httpcore.SyncBackend(), allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        address = checked_address(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), self._allow_private)
        return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise ForbiddenDestination("Unix sockets cannot be fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncChecked(httpcore.AsyncNetworkBackend):
    def __init__(self, allow_private: bool) -> None:
        self._inner, self._allow_private = httpcore.AnyIOBackend(), allow_private

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = checked_address(host, infos, self._allow_private)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise ForbiddenDestination("Unix sockets cannot be fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def client(allow_private: bool, **options: Any) -> httpx.Client:
    """A sync client that connects only where this module allows."""
    transport = httpx.HTTPTransport()
    transport._pool._network_backend = _Checked(allow_private)  # httpx has no parameter for it (pinned versions)
    return httpx.Client(transport=transport, event_hooks={"request": [_scheme]}, **options)


def async_client(allow_private: bool, **options: Any) -> httpx.AsyncClient:
    """An async client that connects only where this module allows."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool._network_backend = _AsyncChecked(allow_private)

    async def scheme(request: httpx.Request) -> None:
        _scheme(request)

    return httpx.AsyncClient(transport=transport, event_hooks={"request": [scheme]}, **options)
