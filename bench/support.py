"""Shared by the benchmarks: a scratch database, a user; and for those that compare our server with
a hand-written SQL baseline (bench/nested_query.py, bench/frontend.py) the contact graph they
seed, the two servers, wrk, and the CPU and statement counters.

The baseline is the ideal the API is measured against: a Starlette app on psycopg_pool that
answers each question with one statement whose JSON PostgreSQL builds. It connects as the
bench's admin user (no row-level security, no credentials), filtering by workspace itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import io
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for path in (ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CONTACTS, RELATIONSHIPS, HUB_NEIGHBOURS = 10_000, 50_000, 200
CONCURRENCY = 10
TITLES = ("Account Executive", "CTO", "Head of Sales", "Engineer", "Product Manager", "Founder", "Buyer", "Analyst")
TAGS = ("customer", "prospect", "partner", "investor", "vip", "churned", "newsletter")


# ---------------------------------------------------------------- database and data


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """The URL of a new database, dropped afterwards."""
    name = f"ctxgraph_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timestamp(seconds: float) -> str:
    """A COPY text timestamptz, microseconds included."""
    whole, micro = divmod(int(round(seconds * 1e6)), 10**6)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{micro:06d}+00"


@dataclass
class Graph:
    """What `seed_graph` wrote: contact ids in creation order (contact 0 is the hub with
    HUB_NEIGHBOURS neighbours, and more edges besides), and when the first was created."""

    contacts: list[uuid.UUID]
    base: float


def seed_graph(url: str, workspace_id: str, companies: list[str] | None = None) -> Graph:
    """CONTACTS contacts (one a minute, with a title and tags, each of a company of `companies`)
    and RELATIONSHIPS manual edges (one a second), deterministic; contact 0 has HUB_NEIGHBOURS
    neighbours. Written by COPY as the owner, in the workspace, so the app role sees them
    through row-level security."""
    rng, extra = random.Random(42), random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(CONTACTS)]
    companies = companies or [f"Company {i}" for i in range(500)]
    base = time.time() - 400 * 86400
    contacts = io.StringIO()
    for i, cid in enumerate(ids):
        created = base + i * 60
        tags = "{" + ",".join(extra.sample(TAGS, extra.randrange(4))) + "}"
        contacts.write(f"{cid}\t{workspace_id}\tPerson {i}\tperson{i}@example{i % 700}.com\t{rng.choice(companies)}\t"
                       f"{extra.choice(TITLES)}\t{tags}\t{timestamp(created)}\t{timestamp(created + extra.random())}\n")
    pairs: set[tuple[int, int]] = {(0, j) for j in range(1, HUB_NEIGHBOURS + 1)}
    while len(pairs) < RELATIONSHIPS:
        a, b = rng.randrange(CONTACTS), rng.randrange(CONTACTS)
        if a != b and (b, a) not in pairs:
            pairs.add((a, b))
    rels = io.StringIO()
    for n, (a, b) in enumerate(sorted(pairs)):
        kind = ("knows", "works_with", "advises")[n % 3]
        rels.write(f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\t{workspace_id}\t{kind}\tContact\t{ids[a]}\tContact\t{ids[b]}\t"
                   f"{round(rng.uniform(0.05, 1), 4)}\t{timestamp(base + n)}\n")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY contacts (id, workspace_id, full_name, email, company, title, tags, created_at, updated_at) FROM STDIN") as copy:
            copy.write(contacts.getvalue())
        with cur.copy("COPY relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id, weight, created_at) FROM STDIN") as copy:
            copy.write(rels.getvalue())
    return Graph(ids, base)


def migrated_settings(url: str, redis_url: str, home: str) -> Any:
    """The app's Settings for a bench database, migrated with the repo's migrations."""
    from app.config import Settings
    from app.db.migrate import upgrade

    settings = Settings(database_url=url, redis_url=redis_url, home=Path(home), rate_limit_per_minute=10**9,
                        graphiql=False, log_level="warning").with_secrets()
    upgrade(settings)
    return settings


def analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def workspace_uuid(gid: str) -> str:
    return base64.b64decode(gid).decode().split(":", 1)[1]


def global_id(type_name: str, id_: Any) -> str:
    return base64.b64encode(f"{type_name}:{id_}".encode()).decode()


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The server of `args`, its output in a file (a pipe nobody reads blocks a server that logs
    once its buffer is full): `log_of(proc)` reads it."""
    log = tempfile.NamedTemporaryFile(prefix="ctxgraph-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    _logs[proc.pid] = log.name
    deadline = time.time() + 60
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_of(proc)}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


_logs: dict[int, str] = {}


def log_of(proc: subprocess.Popen[bytes]) -> str:
    """What the server wrote to stderr so far."""
    return Path(_logs[proc.pid]).read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the server; what it logged is printed when it holds an error."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    path = _logs.pop(proc.pid, None)
    if path is not None:
        text = Path(path).read_text(errors="replace")
        if "Traceback" in text or "ERROR" in text:
            print(f"the server (pid {proc.pid}) logged errors:\n{text[-4000:]}", file=sys.stderr)
        Path(path).unlink(missing_ok=True)


def api_env(url: str, redis_url: str, home: str, **extra: str) -> dict[str, str]:
    """The environment `ctxgraph serve` runs in here: quiet, no GraphiQL, no rate limit to speak of."""
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "CTXGRAPH_HOME": home,
            "CTXGRAPH_LOG_LEVEL": "warning", "CTXGRAPH_GRAPHIQL": "false", "CTXGRAPH_RATE_LIMIT_PER_MINUTE": str(10**9),
            **extra}


def serve_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The API as `ctxgraph serve --no-worker` runs it: one uvicorn process, this checkout's app."""
    return start([sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)], env, port)


@dataclass(frozen=True)
class Baseline:
    """One question of the baseline: a statement, with `{name}` placeholders for the page sizes
    `sizes` (written as literals, as our planner writes them, so that a prepared statement's
    generic plan knows its LIMIT; other braces doubled) and the parameters `params(variables)`
    besides `ws`."""

    sql: str
    sizes: tuple[str, ...] = ()
    params: Callable[[dict[str, Any]], dict[str, Any]] = lambda variables: {}

    def statement(self, variables: dict[str, Any]) -> str:
        return self.sql.format(**{name: int(variables[name]) for name in self.sizes})


def baseline_app(database_url: str, workspace_id: str, routes_ref: str) -> Any:
    """Starlette + psycopg_pool answering POST /<path> (a GraphQL body: its variables are read)
    with the one statement of `routes_ref` ("module:NAME", a dict of path -> Baseline)."""
    import orjson
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    module, _, name = routes_ref.partition(":")
    routes: dict[str, Baseline] = getattr(importlib.import_module(module), name)
    async def in_workspace(conn: Any) -> None:
        """The workspace for SQL functions that read it from the session (search candidates)."""
        await conn.execute("SELECT set_config('app.workspace_id', %s, false)", [workspace_id])
        await conn.commit()

    pool = AsyncConnectionPool(database_url, min_size=4, max_size=10, open=False, configure=in_workspace)

    def endpoint(baseline: Baseline) -> Any:
        async def run(request: Request) -> Response:
            body = await request.body()
            variables = (orjson.loads(body).get("variables") or {}) if body else {}
            async with pool.connection() as conn:
                row = await (await conn.execute(baseline.statement(variables),
                                                {"ws": workspace_id, **baseline.params(variables)})).fetchone()
            return Response(row[0], media_type="application/json")
        return run

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        await pool.open()
        yield
        await pool.close()

    return Starlette(routes=[Route(path, endpoint(b), methods=["POST"]) for path, b in routes.items()], lifespan=lifespan)


def serve_baseline(database_url: str, workspace_id: str, routes_ref: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    code = ("import sys, uvicorn; sys.path.insert(0, 'bench'); import support; "
            f"uvicorn.run(support.baseline_app({database_url!r}, {workspace_id!r}, {routes_ref!r}), host='127.0.0.1', "
            f"port={port}, log_level='warning')")
    return start([sys.executable, "-c", code], env, port)


SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  accessToken viewer { workspaces { id } } userErrors { message } } }"""


def sign_up(url: str) -> tuple[str, str]:
    """(access token, workspace global id) of a new user of the API served at `url`."""
    body = httpx.post(f"{url}/graphql", json={"query": SIGN_UP, "variables": {"input": {
        "email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "password": "correct horse battery",
        "name": "Bench", "workspaceName": "Bench"}}}, timeout=30).json()
    payload = body["data"]["signUp"]
    return payload["accessToken"], payload["viewer"]["workspaces"][0]["id"]


# ---------------------------------------------------------------- load


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
for name, value in string.gmatch(os.getenv("WRK_HEADERS"), "([^\\n:]+): ([^\\n]+)") do wrk.headers[name] = value end
"""


WRK_OPTIONS = ("-t2", f"-c{CONCURRENCY}", "--timeout", "30s")
"Two threads, CONCURRENCY connections; a slow page (seconds a request) is measured, not timed out at wrk's 2 s."


def _ms(text: str) -> float:
    value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:] if text[-2:] in ("ms", "us") else text[-1:]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(url: str, body: dict[str, Any], headers: dict[str, str], seconds: float, warmup: float = 2.0,
             around: Callable[[], Any] | None = None) -> dict[str, float]:
    """wrk (a C load generator, 2 threads, CONCURRENCY connections): the client costs little CPU,
    so the figures are the server's. Bodies are checked by one request beforehand. `around`, if
    given, is entered around the measured run only (after the warm-up): a context manager
    factory, for counters read before and after."""
    check = httpx.post(url, json=body, headers=headers, timeout=30)
    if check.status_code != 200 or b'"errors"' in check.content[:200]:
        raise RuntimeError(f"bad response: {check.status_code} {check.text[:300]}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {**os.environ, "WRK_BODY": json.dumps(body), "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in
                                                                                {"content-type": "application/json", **headers}.items())}
    try:
        if warmup:
            subprocess.run(["wrk", *WRK_OPTIONS, f"-d{max(1, round(warmup))}s", "-s", script.name, url],
                           env=env, capture_output=True, check=True)
        with around() if around else contextlib.nullcontext():
            out = subprocess.run(["wrk", *WRK_OPTIONS, f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name, url],
                                 env=env, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out or "Requests/sec:" not in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    if int(re.search(r"(\d+) requests in", out).group(1)) == 0:  # type: ignore[union-attr]
        raise RuntimeError(f"no request finished within the run:\n{out}")
    found = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": _ms(found["50"]),  # type: ignore[union-attr]
            "p99": _ms(found["99"]), "n": float(re.search(r"(\d+) requests in", out).group(1))}  # type: ignore[union-attr]


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


# ---------------------------------------------------------------- counters


def cpu_ms(pid: int) -> float:
    """utime + stime of a process so far (/proc/<pid>/stat), in ms."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def backends_cpu_ms(admin_url: str, database_url: str) -> dict[int, float]:
    """CPU so far of each client backend connected to the database of `database_url`."""
    name = database_url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'", (name,))]
    out = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out[pid] = cpu_ms(pid)
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends spent between two `backends_cpu_ms` readings (a backend that left in
    between is not counted: the pools keep theirs open under load)."""
    return sum(ms - before.get(pid, 0.0) for pid, ms in after.items())


async def statements_per_request(settings: Any, headers: dict[str, str], bodies: dict[str, dict[str, Any]]) -> dict[str, int]:
    """SQL statements one repeated request of each body costs: counted in process, on an app of
    this checkout over the same database, by an engine listener (`Database._execute` reports
    its direct statements to the engine's listeners too); the first request warms the caches."""
    from sqlalchemy import event

    from app.http import create_app

    app = create_app(settings)
    counted: list[str] = []
    engine = app.state.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", lambda *a: counted.append(a[2]))
    out = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        for name, body in bodies.items():
            await client.post("/graphql", json=body, headers=headers)
            counted.clear()
            response = await client.post("/graphql", json=body, headers=headers)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
            out[name] = len(counted)
    await app.state.services.redis.aclose()
    await app.state.services.db.dispose()
    return out
