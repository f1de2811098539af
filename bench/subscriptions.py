"""1,000 concurrent jobProgress subscribers on one API process following one job run by a worker
process: every subscriber must receive every event and the terminal one. Prints the delivery
latency (the job's updatedAt, set as its state commits, to the client's receipt: p50/p99) and
the API process's memory before and with the sockets open, and the CPU time the API process and
this client process (1,000 sockets' worth of frames and JSON, on the same cores) spent while the
job ran.

    .venv/bin/python bench/subscriptions.py [SUBSCRIBERS] [ITEMS] [BATCH]

BATCH (the job's batch size, default 1,000, more events than the server's default 2,500) sets the event rate: one per batch.

The client is a minimal graphql-transport-ws client over real TCP sockets (`Subscription`, an
asyncio Protocol on uvloop): it performs the HTTP/1.1 upgrade (checking the accept key and the
subprotocol), sends masked text frames, answers pings, parses every frame the server sends and
checks every message (ids, types, the selection's fields). A message is timestamped as its
bytes are handed to the protocol, before any parsing. A general-purpose client (the
`websockets` library) spent ~50 ms of CPU per event for 1,000 sockets on the same 2 cores as
the server, and its queueing was measured as the server's latency.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_support import (  # noqa: E402
    START, contacts, env_of, graphql, process, rss_mb, scratch_settings, wait_healthy,
)
from support import free_port, sign_up  # noqa: E402

from app.pubsub import job_channel  # noqa: E402
from app.services import ids  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { status updatedAt progress { processed } } }"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame: masked, as RFC 6455 requires of a client."""
    key = os.urandom(4)
    n = len(payload)
    header = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else struct.pack("!BH", 0x80 | 126, n))
    masked = int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return header + key + masked.to_bytes(n, "big")


class Subscription(asyncio.Protocol):
    """One socket following one job: (status, updatedAt, receipt time) of each `next`, in `seen`."""

    def __init__(self, host: str, init: dict[str, Any], job_id: str, subscribed: asyncio.Future[None]) -> None:
        self.host, self.init, self.job_id = host, init, job_id
        self.subscribed, self.done = subscribed, asyncio.get_running_loop().create_future()
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.buffer = b""
        self.upgraded = False
        self.seen: list[tuple[str, str, float]] = []
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(
            f"GET /graphql HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"closed before complete ({exc})"))

    def fail(self, exc: Exception) -> None:
        for future in (self.subscribed, self.done):
            if not future.done():
                future.set_exception(exc)

    def send(self, message: dict[str, Any]) -> None:
        self.transport.write(frame(TEXT, json.dumps(message).encode()))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        try:
            self.buffer += data
            if not self.upgraded:
                head, found, self.buffer = self.buffer.partition(b"\r\n\r\n")
                if not found:
                    self.buffer = head
                    return
                self.handshake(head.decode("latin-1"))
            while len(self.buffer) >= 2:
                opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
                assert self.buffer[0] & 0x80 and not self.buffer[1] & 0x80, "fragmented or masked server frame"
                if length == 126:
                    if len(self.buffer) < 4:
                        return
                    (length,), start = struct.unpack_from("!H", self.buffer, 2), 4
                elif length == 127:
                    if len(self.buffer) < 10:
                        return
                    (length,), start = struct.unpack_from("!Q", self.buffer, 2), 10
                if len(self.buffer) < start + length:
                    return
                payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
                if opcode == TEXT:
                    self.message(json.loads(payload), now)
                elif opcode == PING:
                    self.transport.write(frame(PONG, payload))
                elif opcode == CLOSE:
                    raise AssertionError(f"closed by the server: {payload!r}")
                else:
                    raise AssertionError(f"unexpected frame opcode {opcode}")
        except Exception as exc:  # noqa: BLE001 - the run fails with it
            self.fail(exc)
            self.transport.abort()

    def handshake(self, head: str) -> None:
        status, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        assert status.split()[1] == "101", status
        assert headers.get("sec-websocket-accept") == accept and headers.get("sec-websocket-protocol") == "graphql-transport-ws"
        self.upgraded = True
        self.send({"type": "connection_init", "payload": self.init})

    def message(self, message: dict[str, Any], now: float) -> None:
        kind = message["type"]
        if kind == "connection_ack":
            self.send({"id": "1", "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": self.job_id}}})
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind == "next":
            assert message["id"] == "1" and message["payload"].keys() == {"data"}, message
            job = message["payload"]["data"]["jobProgress"]
            assert job.keys() == {"status", "updatedAt", "progress"} and job["progress"].keys() == {"processed"}, job
            assert not self.seen or self.seen[-1][0] not in TERMINAL, "an event after the terminal one"
            self.seen.append((job["status"], job["updatedAt"], now))
            if len(self.seen) == 1:
                self.subscribed.set_result(None)
        elif kind == "complete":
            assert message == {"id": "1", "type": "complete"} and self.seen and self.seen[-1][0] in TERMINAL, message
            self.transport.write(frame(CLOSE, struct.pack("!H", 1000)))
            self.transport.close()
            self.done.set_result(None)
        else:
            raise AssertionError(f"unexpected message {message}")


async def subscriber(port: int, token: str, workspace: str, job_id: str) -> tuple[Subscription, asyncio.Future[None]]:
    """A socket subscribed to the job, and the future of its first event."""
    subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    init = {"authorization": f"Bearer {token}", "workspaceId": workspace}
    _, protocol = await asyncio.get_running_loop().create_connection(
        lambda: Subscription(f"127.0.0.1:{port}", init, job_id, subscribed), "127.0.0.1", port)
    return protocol, subscribed


async def redis_listener(redis_url: str, job_id: str, ready: asyncio.Event) -> list[float]:
    """The floor under the sockets' latency: commit -> publish -> a plain Redis subscriber (ms)."""
    latencies: list[float] = []
    async with Redis.from_url(redis_url) as redis, redis.pubsub() as pubsub:
        await pubsub.subscribe(job_channel(ids.decode_as(job_id, "Job")))  # type: ignore[arg-type]
        ready.set()
        async for message in pubsub.listen():
            if message["type"] == "message":
                snap = json.loads(message["data"])
                latencies.append((time.time() - datetime.fromisoformat(snap["updatedAt"]).timestamp()) * 1000)
                if snap["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    return latencies


async def run(n_subscribers: int, n_items: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as home, scratch_settings(Path(home)) as settings:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = env_of(settings, CTXGRAPH_JOB_BATCH_SIZE=str(batch))
        with process(["serve", "--no-worker", "--port", str(port)], env) as server:
            wait_healthy(url, server)
            token, workspace = sign_up(url)
            job = graphql(url, token, workspace, START, {"input": {
                "target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": contacts(n_items)}}})
            job_id = job["startImport"]["job"]["id"]
            before = rss_mb(server.pid)
            opened = await asyncio.gather(*(subscriber(port, token, workspace, job_id) for _ in range(n_subscribers)))
            await asyncio.wait_for(asyncio.gather(*(first for _, first in opened)), 120)
            sockets = [protocol for protocol, _ in opened]
            listening = asyncio.Event()
            floor_task = asyncio.create_task(redis_listener(settings.redis_url or "", job_id, listening))
            await asyncio.wait_for(listening.wait(), 10)
            with_sockets = rss_mb(server.pid)
            server_cpu, client_cpu, started = cpu_seconds(server.pid), time.process_time(), time.monotonic()
            with process(["worker", "--threads", "1"], env):
                peak = with_sockets
                while not all(socket_.done.done() for socket_ in sockets):
                    await asyncio.sleep(0.2)
                    peak = max(peak, rss_mb(server.pid))
                elapsed = time.monotonic() - started
                server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
            results = [socket_.seen for socket_ in sockets if socket_.done.result() is None]  # raises what a socket saw wrong
            floor = sorted(await asyncio.wait_for(floor_task, 30))

    published = {u for seen in results for _, u, _ in seen}
    complete = sum(1 for seen in results if {u for _, u, _ in seen} == published and seen[-1][0] == "COMPLETED")
    latencies = sorted((t - datetime.fromisoformat(u).timestamp()) * 1000
                       for seen in results for _, u, t in seen[1:])  # the first is the state at subscribe time
    by_event: dict[str, list[float]] = {}
    for seen in results:
        for _, u, t in seen[1:]:
            by_event.setdefault(u, []).append(t)
    first = statistics.median((min(ts) - datetime.fromisoformat(u).timestamp()) * 1000 for u, ts in by_event.items())
    spread = statistics.median((max(ts) - min(ts)) * 1000 for ts in by_event.values())
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"subscribers:              {n_subscribers}")
    print(f"events published:         {len(published)} (job of {n_items} items, batches of {batch})")
    print(f"received every event:     {complete}/{n_subscribers} ({100 * complete / n_subscribers:.1f}%)")
    print(f"delivery latency:         p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"plain Redis subscriber:   p50 {statistics.median(floor):.1f} ms, max {floor[-1]:.1f} ms "
          "(the floor: the worker's commit and publish)")
    print(f"per event (median):       first socket served after {first:.1f} ms, "
          f"first to last socket {spread:.1f} ms")
    print(f"API process memory (RSS): {before:.0f} MB before, {with_sockets:.0f} MB with the sockets, "
          f"{peak:.0f} MB peak (+{peak - before:.0f} MB)")
    print(f"CPU while the job ran:    API process {server_cpu:.1f} s, this client {client_cpu:.1f} s "
          f"(over {elapsed:.1f} s, 2 cores shared with the worker, PostgreSQL and Redis)")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    uvloop.run(run(*(args + [1000, 20_000, 1000][len(args):])))
