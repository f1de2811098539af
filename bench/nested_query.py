"""Nested-query benchmark: our GraphQL server against a hand-written single-SQL baseline.

Seeds 10,000 contacts and 50,000 relationships (deterministic) into a database of its own
(created, migrated, dropped), serves the API as `ctxgraph serve --no-worker` does (uvicorn, one
process) and a Starlette + psycopg_pool baseline answering the same two questions with one SQL
statement each (json_agg), then drives both at concurrency 10 for a bounded time:

  Q1  the first 50 contacts with id, fullName, email
  Q2  50 contacts, each with its first 10 relationships and the other end's fullName

and prints requests/s, p50, p99, SQL statements per request and our/baseline ratios, and the
time of relationshipGraph depth 2 around a contact with 200 neighbours.

    .venv/bin/python bench/nested_query.py [--seconds 15] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTACTS, RELATIONSHIPS, HUB_NEIGHBOURS = 10_000, 50_000, 200
CONCURRENCY = 10
Q1 = "{ contacts(first: 50) { edges { node { id fullName email } } } }"
Q2 = ("{ contacts(first: 50) { edges { node { id fullName relationships(first: 10) { edges { node { kind "
      "other { ... on Contact { fullName } } } } } } } } }")
GRAPH = "query($f: ID!) { relationshipGraph(focus: $f, depth: 2, limit: 1000) { nodes { id } edges { weight } } }"

# The baseline: one statement per question, JSON built by PostgreSQL.
GID = "encode(convert_to('Contact:' || {}::text, 'UTF8'), 'base64')"
BASE_Q1 = f"""
SELECT json_build_object('data', json_build_object('contacts', json_build_object('edges',
  coalesce(json_agg(json_build_object('node', json_build_object('id', {GID.format('c.id')}, 'fullName', c.full_name,
  'email', c.email)) ORDER BY c.created_at, c.id), '[]'))))::text
FROM (SELECT id, full_name, email, created_at FROM contacts WHERE workspace_id = %(ws)s AND deleted_at IS NULL
      ORDER BY created_at, id LIMIT 50) c
"""
BASE_Q2 = f"""
SELECT json_build_object('data', json_build_object('contacts', json_build_object('edges',
  coalesce(json_agg(json_build_object('node', json_build_object('id', {GID.format('c.id')}, 'fullName', c.full_name,
  'relationships', json_build_object('edges', r.edges))) ORDER BY c.created_at, c.id), '[]'))))::text
FROM (SELECT id, full_name, created_at FROM contacts WHERE workspace_id = %(ws)s AND deleted_at IS NULL
      ORDER BY created_at, id LIMIT 50) c
CROSS JOIN LATERAL (
  SELECT coalesce(json_agg(json_build_object('node', json_build_object('kind', e.kind,
           'other', json_build_object('fullName', o.full_name))) ORDER BY e.created_at, e.id), '[]') AS edges
  FROM (SELECT * FROM relationships x WHERE x.workspace_id = %(ws)s AND (x.source_id = c.id OR x.target_id = c.id)
        ORDER BY x.created_at, x.id LIMIT 10) e
  JOIN contacts o ON o.id = CASE WHEN e.source_id = c.id THEN e.target_id ELSE e.source_id END
) r
"""


def baseline_app(database_url: str, workspace_id: str) -> Any:
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    pool = AsyncConnectionPool(database_url, min_size=4, max_size=10, open=False)

    def endpoint(sql: str) -> Any:
        async def run(_: Any) -> Response:
            async with pool.connection() as conn:
                row = await (await conn.execute(sql, {"ws": workspace_id})).fetchone()
            return Response(row[0], media_type="application/json")
        return run

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        await pool.open()
        yield
        await pool.close()

    return Starlette(routes=[Route("/q1", endpoint(BASE_Q1), methods=["POST"]),
                             Route("/q2", endpoint(BASE_Q2), methods=["POST"])], lifespan=lifespan)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    name = f"ctxgraph_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, workspace_id: str) -> str:
    """10,000 contacts, 50,000 manual relationships; contact 0 has 200 neighbours. Returns its id."""
    rng = random.Random(42)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(CONTACTS)]
    companies = [f"Company {i}" for i in range(500)]
    base = time.time() - 400 * 86400
    contacts = io.StringIO()
    for i, cid in enumerate(ids):
        created = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(base + i * 60))
        contacts.write(f"{cid}\t{workspace_id}\tPerson {i}\tperson{i}@example{i % 700}.com\t{rng.choice(companies)}\t{created}\t{created}\n")
    pairs: set[tuple[int, int]] = {(0, j) for j in range(1, HUB_NEIGHBOURS + 1)}
    while len(pairs) < RELATIONSHIPS:
        a, b = rng.randrange(CONTACTS), rng.randrange(CONTACTS)
        if a != b and (b, a) not in pairs:
            pairs.add((a, b))
    rels = io.StringIO()
    for n, (a, b) in enumerate(sorted(pairs)):
        created = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(base + n))
        kind = ("knows", "works_with", "advises")[n % 3]
        rels.write(f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\t{workspace_id}\t{kind}\tContact\t{ids[a]}\tContact\t{ids[b]}\t"
                   f"{round(rng.uniform(0.05, 1), 4)}\t{created}\n")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY contacts (id, workspace_id, full_name, email, company, created_at, updated_at) FROM STDIN") as copy:
            copy.write(contacts.getvalue())
        with cur.copy("COPY relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id, weight, created_at) FROM STDIN") as copy:
            copy.write(rels.getvalue())
        cur.execute("ANALYZE")
    return str(ids[0])


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
for name, value in string.gmatch(os.getenv("WRK_HEADERS"), "([^\\n:]+): ([^\\n]+)") do wrk.headers[name] = value end
"""


def _ms(text: str) -> float:
    value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:] if text[-2:] in ("ms", "us") else text[-1:]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(url: str, body: dict[str, Any], headers: dict[str, str], seconds: float) -> dict[str, float]:
    """wrk (a C load generator, 2 threads, CONCURRENCY connections): the client costs little CPU,
    so the figures are the server's. Bodies are checked by one request beforehand."""
    check = httpx.post(url, json=body, headers=headers, timeout=30)
    if check.status_code != 200 or b'"errors"' in check.content[:200]:
        raise RuntimeError(f"bad response: {check.status_code} {check.text[:300]}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {**os.environ, "WRK_BODY": json.dumps(body), "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in
                                                                                {"content-type": "application/json", **headers}.items())}
    subprocess.run(["wrk", "-t2", f"-c{CONCURRENCY}", "-d2s", "-s", script.name, url], env=env, capture_output=True, check=True)
    out = subprocess.run(["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{int(seconds)}s", "--latency", "-s", script.name, url],
                         env=env, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out or "Requests/sec:" not in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    found = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": _ms(found["50"]),
            "p99": _ms(found["99"]), "n": float(re.search(r"(\d+) requests in", out).group(1))}


async def load(url: str, body: dict[str, Any], headers: dict[str, str], seconds: float) -> dict[str, float]:
    """CONCURRENCY clients posting `body` back to back for `seconds` (after a 2 s warm-up): wrk when
    it is installed, else an async Python client (which shares the CPU with the server)."""
    if shutil.which("wrk"):
        return await asyncio.to_thread(load_wrk, url, body, headers, seconds)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker(until: float, record: bool) -> None:
            while (now := time.perf_counter()) < until:
                response = await client.post(url, json=body, headers=headers)
                if response.status_code != 200 or b'"errors"' in response.content[:200]:
                    raise RuntimeError(f"bad response: {response.status_code} {response.text[:300]}")
                if record:
                    latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker(time.perf_counter() + 2, False) for _ in range(CONCURRENCY)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "n": len(latencies)}


async def statements_per_request(settings: Any, headers: dict[str, str]) -> dict[str, int]:
    """Runs each query once in process with a statement counter on the engine."""
    from sqlalchemy import event

    from app.http import create_app

    app = create_app(settings)
    counted: list[str] = []
    engine = app.state.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", lambda *a: counted.append(a[2]))
    out = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        for name, query in (("Q1", Q1), ("Q2", Q2)):
            await client.post("/graphql", json={"query": query}, headers=headers)
            counted.clear()
            response = await client.post("/graphql", json={"query": query}, headers=headers)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
            out[name] = len(counted)
    await app.state.services.redis.aclose()
    await app.state.services.db.dispose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (15)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    opts = parser.parse_args()

    from app.config import Settings
    from app.db.migrate import upgrade

    with database(opts.admin_url) as url, tempfile.TemporaryDirectory() as home:
        settings = Settings(database_url=url, redis_url=opts.redis_url, home=Path(home), rate_limit_per_minute=10**9,
                            graphiql=False, log_level="warning").with_secrets()
        upgrade(settings)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": opts.redis_url, "CTXGRAPH_HOME": home,
               "CTXGRAPH_LOG_LEVEL": "warning", "CTXGRAPH_GRAPHIQL": "false", "CTXGRAPH_RATE_LIMIT_PER_MINUTE": str(10**9)}
        port, base_port = free_port(), free_port()
        api = start([sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)], env, port)
        try:
            async with httpx.AsyncClient() as client:
                signed = (await client.post(f"http://127.0.0.1:{port}/graphql", json={"query": """mutation {
                    signUp(input: {email: "bench@example.com", password: "bench password 1", workspaceName: "Bench"}) {
                      accessToken viewer { workspaces { id } } } }"""})).json()["data"]["signUp"]
            token, ws_gid = signed["accessToken"], signed["viewer"]["workspaces"][0]["id"]
            import base64

            workspace_id = base64.b64decode(ws_gid).decode().split(":", 1)[1]
            t0 = time.perf_counter()
            hub = seed(url, workspace_id)
            print(f"seeded {CONTACTS:,} contacts and {RELATIONSHIPS:,} relationships in {time.perf_counter() - t0:.1f} s")
            headers = {"authorization": f"Bearer {token}", "x-workspace-id": ws_gid, "content-type": "application/json"}
            statements = await statements_per_request(settings, headers)

            graph_ms = []
            async with httpx.AsyncClient(timeout=60) as client:
                hub_gid = base64.b64encode(f"Contact:{hub}".encode()).decode()
                for _ in range(6):
                    t = time.perf_counter()
                    r = (await client.post(f"http://127.0.0.1:{port}/graphql", headers=headers,
                                           json={"query": GRAPH, "variables": {"f": hub_gid}})).json()
                    graph_ms.append((time.perf_counter() - t) * 1000)
                nodes = len(r["data"]["relationshipGraph"]["nodes"])
                edges = len(r["data"]["relationshipGraph"]["edges"])

            ours = {name: await load(f"http://127.0.0.1:{port}/graphql", {"query": q}, headers, opts.seconds)
                    for name, q in (("Q1", Q1), ("Q2", Q2))}
        finally:
            stop(api)
        baseline = start([sys.executable, "-c",
                          "import sys, uvicorn; sys.path.insert(0, 'bench'); import nested_query as b; "
                          f"uvicorn.run(b.baseline_app({url!r}, {workspace_id!r}), host='127.0.0.1', port={base_port}, "
                          "log_level='warning')"], env, base_port)
        try:
            theirs = {name: await load(f"http://127.0.0.1:{base_port}/{name.lower()}", {}, {}, opts.seconds)
                      for name in ("Q1", "Q2")}
        finally:
            stop(baseline)

    client = "wrk" if shutil.which("wrk") else "a Python client (install wrk for server-only figures)"
    print(f"\nconcurrency {CONCURRENCY} with {client}, {opts.seconds:.0f} s per run, one server process each, same machine and database\n")
    print(f"{'':4} {'server':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'SQL/req':>8}")
    for name in ("Q1", "Q2"):
        for label, r, sql in (("graphql", ours[name], statements[name]), ("baseline", theirs[name], 1)):
            print(f"{name:4} {label:10} {r['rps']:8.0f} {r['p50']:8.1f} {r['p99']:8.1f} {sql:8d}")
        print(f"{name:4} {'ratio':10} {ours[name]['rps'] / theirs[name]['rps']:8.2f}x")
    print("(ours: the transaction's scope and the plan go to PostgreSQL together, one round trip; the caller's\n"
          " credential is remembered between requests, app/admission.py, so one Redis call admits a request)")
    print(f"\nrelationshipGraph depth 2 around a contact with {HUB_NEIGHBOURS} neighbours: {nodes} nodes, {edges} edges, "
          f"median {statistics.median(graph_ms[1:]):.0f} ms (first {graph_ms[0]:.0f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
