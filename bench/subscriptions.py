"""1,000 concurrent jobProgress subscribers on one API process following one job run by a worker
process: every subscriber must receive every event and the terminal one. Prints the delivery
latency (the job's updatedAt, set as its state commits, to the client's receipt: p50/p99) and
the API process's memory before and with the sockets open, and the CPU time the API process and
this client process (1,000 sockets' worth of frames and JSON, on the same cores) spent while the
job ran.

    .venv/bin/python bench/subscriptions.py [SUBSCRIBERS] [ITEMS] [BATCH]

BATCH (the job's batch size, default the server's 1,000) sets the event rate: one per batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_support import (  # noqa: E402
    START, contacts, env_of, free_port, graphql, process, rss_mb, scratch_settings, sign_up, wait_healthy,
)

from app.pubsub import job_channel  # noqa: E402
from app.services import ids  # noqa: E402

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { status updatedAt progress { processed } } }"


async def subscriber(url: str, token: str, workspace: str, job_id: str, ready: asyncio.Event,
                     counter: list[int], total: int) -> list[tuple[str, str, float]]:
    """(status, updatedAt, receipt time) of each event received."""
    seen: list[tuple[str, str, float]] = []
    async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}",
                                                                         "workspaceId": workspace}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": job_id}}}))
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "next":
                job = message["payload"]["data"]["jobProgress"]
                seen.append((job["status"], job["updatedAt"], now))
                if len(seen) == 1:
                    counter[0] += 1
                    if counter[0] == total:
                        ready.set()
            elif message["type"] == "complete":
                break
    return seen


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
            ready, counter = asyncio.Event(), [0]
            tasks = [asyncio.create_task(subscriber(url.replace("http", "ws") + "/graphql", token, workspace, job_id,
                                                    ready, counter, n_subscribers))
                     for _ in range(n_subscribers)]
            await asyncio.wait_for(ready.wait(), 120)
            listening = asyncio.Event()
            floor_task = asyncio.create_task(redis_listener(settings.redis_url or "", job_id, listening))
            await asyncio.wait_for(listening.wait(), 10)
            with_sockets = rss_mb(server.pid)
            server_cpu, client_cpu, started = cpu_seconds(server.pid), time.process_time(), time.monotonic()
            with process(["worker", "--threads", "1"], env):
                peak = with_sockets
                while not all(t.done() for t in tasks):
                    await asyncio.sleep(0.2)
                    peak = max(peak, rss_mb(server.pid))
                elapsed = time.monotonic() - started
                server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
            results = [t.result() for t in tasks]
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
    asyncio.run(run(*(args + [1000, 20_000, 1000][len(args):])))
