"""Search at scale: 10,000 contacts, 5,000 records and 1,000 documents (about 600 words each,
chunked), seeded through the real services into a workspace of a scratch database, then
`search` over HTTP against `ctxgraph serve --no-worker` (one process) for several query shapes.

For each shape it prints requests a second with `--clients` clients back to back, the server's
CPU per request (our Python), PostgreSQL's CPU per request (the backends of the scratch database,
read from /proc: PostgreSQL must run on this machine) and the latency's p50 / p99. Then it runs
one search of the common word in process, capturing its statements, and prints the time of
each alone (median of 30 runs) and EXPLAIN (ANALYZE, BUFFERS) of each as the app role with `app.workspace_id` set the way a tenant
session sets them; auto_explain shows the plans inside the SECURITY DEFINER match functions too.

    .venv/bin/python bench/search.py [--contacts 10000] [--records 5000] [--docs 1000] [--seconds 10] [--clients 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs_support import env_of, free_port, process, scratch_settings, sign_up, wait_healthy  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db.engine import Database  # noqa: E402
from app.services import contacts, documents, object_types, records, search  # noqa: E402
from app.services.access import Principal  # noqa: E402

COMMON = "account"
"A word in about half of the contacts' titles, records' names and documents' paragraphs."
TOPICS = ["kafka", "postgres", "billing", "invoice", "onboarding", "latency", "migration", "kubernetes", "refund",
          "contract", "renewal", "security", "compliance", "roadmap", "pricing", "churn", "support", "outage"]
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Margaret", "Linus", "Guido", "Anita",
               "Radia", "Frances", "John", "Leslie", "Tim", "Vint", "Katherine", "Dennis", "Bjarne"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson", "Hamilton", "Torvalds",
              "Rossum", "Borg", "Perlman", "Allen", "McCarthy", "Lamport", "Berners", "Cerf", "Johnson", "Ritchie"]
TITLES = ["Account Executive", "Account Manager", "Key Account Director", "Engineer", "Designer", "Support Lead",
          "Head of Billing", "Product Manager", "CTO", "Finance Analyst"]
COMPANIES = [f"{a} {b}" for a in ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
             for b in ("Labs", "Systems", "Accounting", "Logistics", "Media")]
CITIES = ["Berlin", "Paris", "Lisbon", "Austin", "Toronto", "Osaka", "Nairobi", "Lima"]
SEARCH = """query Search($q: String!, $first: Int) { search(query: $q, first: $first) {
  __typename score snippet node { __typename id ... on Contact { fullName } ... on Record { name }
  ... on Document { title } } } }"""


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = set()
    while len(words) < size:
        n = rng.randint(3, 10)
        words.add("".join(rng.choice(letters[: rng.randint(8, 26)]) for _ in range(n)))
    return sorted(words)


def prose(rng: random.Random, words: list[str], weights: list[float], n: int, topics: list[str]) -> str:
    """`n` Zipf-distributed words with a few topic words, and the common word half of the time."""
    body = rng.choices(words, weights, k=n)
    for _ in range(rng.randint(0, 3)):
        body.insert(rng.randrange(len(body)), rng.choice(topics))
    if rng.random() < 0.5:
        body.insert(rng.randrange(len(body)), COMMON)
    if rng.random() < 0.2:
        body.insert(rng.randrange(len(body)), "quarterly business review")
    return " ".join(body).capitalize() + "."


def document(rng: random.Random, words: list[str], weights: list[float], i: int) -> tuple[str, str]:
    """A title and ~600 words in paragraphs."""
    topics = rng.sample(TOPICS, 2)
    paragraphs = [prose(rng, words, weights, rng.randint(60, 120), topics) for _ in range(rng.randint(4, 8))]
    return f"{topics[0].title()} notes {i}", "\n\n".join(paragraphs)


def contact(rng: random.Random, i: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {"id": f"c-{i}", "fullName": f"{first} {last}", "email": f"{first}.{last}.{i}@example.com".lower(),
            "title": rng.choice(TITLES), "company": rng.choice(COMPANIES), "city": rng.choice(CITIES)}


def record(rng: random.Random, words: list[str], weights: list[float], i: int) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    name = f"{rng.choice(COMPANIES)} {topic} {'account' if rng.random() < 0.5 else 'deal'} {i}"
    return {"id": f"r-{i}", "name": name, "fields": {"notes": prose(rng, words, weights, rng.randint(10, 40), [topic])}}


async def seed(settings: Settings, ws: uuid.UUID, n_contacts: int, n_records: int, n_docs: int) -> None:
    rng = random.Random(7)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    p = Principal(user_id=uuid.uuid4(), workspace_id=ws, role="OWNER", scopes=frozenset({"*"}))
    db = Database(settings)
    batch = 500
    async with db.tenant(ws) as s:
        ot = await object_types.create_object_type(s, p, name="deal", display_name="Deal",
                                                   field_definitions=[{"name": "notes", "fieldType": "TEXT"}])
        await s.commit()
    def doc_item(i: int) -> dict[str, Any]:
        title, content = document(rng, words, weights, i)
        return {"id": f"d-{i}", "title": title, "content": content, "contentType": "text/plain"}

    kinds: list[tuple[int, Callable[[int], dict[str, Any]], Any]] = [
        (n_contacts, lambda i: contact(rng, i), lambda s, items, at: contacts.import_contacts(s, p, items, None, at)),
        (n_records, lambda i: record(rng, words, weights, i),
         lambda s, items, at: records.import_records(s, p, ot.id, items, None, at)),
        (n_docs, doc_item, lambda s, items, at: documents.import_documents(s, p, items, None, at)),
    ]
    for n, make, importer in kinds:
        for start in range(0, n, batch):
            items = [make(i) for i in range(start, min(n, start + batch))]
            async with db.tenant(ws) as s:
                outcomes = await importer(s, items, start)
                await s.commit()
            failed = [o for o in outcomes if o.outcome != "CREATED"]
            assert not failed, failed[:3]
    await db.dispose()


def backend_cpu(conn: psycopg.Connection[Any], database: str) -> dict[int, float]:
    """CPU seconds so far of each client backend of `database`."""
    pids = [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid()", (database,))]
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clients(url: str, headers: dict[str, str], make: Callable[[], str], n: int, seconds: float
            ) -> tuple[list[float], int]:
    """Latencies (ms) of `n` clients sending searches back to back for `seconds`, and hits returned."""
    latencies: list[float] = []
    hits = [0]
    deadline = time.monotonic() + seconds

    def run() -> None:
        with httpx.Client(headers=headers, timeout=60) as client:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                variables = {"q": make(), "first": 20}
                body = client.post(f"{url}/graphql", json={"query": SEARCH, "variables": variables}).json()
                latencies.append((time.perf_counter() - began) * 1000)
                if body.get("errors"):
                    raise RuntimeError(body["errors"])
                hits[0] += len(body["data"]["search"])

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, hits[0]


@contextmanager
def statements_of(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The statements the engine sends meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "set_config" not in statement:
            seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", listen)


async def explain(settings: Settings, ws: uuid.UUID, text: str) -> None:
    """The time of each statement of one search, then its EXPLAIN (ANALYZE, BUFFERS), as the app
    role in `ws` (the EXPLAIN's timings include auto_explain's instrumentation of nested plans)."""
    db = Database(settings)
    p = Principal(user_id=uuid.uuid4(), workspace_id=ws, role="OWNER", scopes=frozenset({"*"}))
    with statements_of(db) as seen:
        async with db.tenant(ws) as s:
            await search.search(s, p, text, None, 20)
    await db.dispose()
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        for statement, params in seen:
            times = []
            for _ in range(30):
                with conn.transaction():
                    conn.execute("SELECT set_config('role', %s, true), set_config('app.workspace_id', %s, true)",
                                 (settings.app_role, str(ws)))
                    began = time.perf_counter()
                    conn.execute(statement, params, prepare=True).fetchall()
                    times.append((time.perf_counter() - began) * 1000)
            print(f"  a statement of {len(statement):,} characters: median {statistics.median(times):.1f} ms, "
                  f"min {min(times):.1f} ms (30 runs as the app role, prepared, with the round trip)")
        nested: list[str] = []
        conn.add_notice_handler(lambda d: nested.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for option in ("log_min_duration = 0", "log_analyze = on", "log_buffers = on", "log_nested_statements = on",
                       "log_timing = on"):
            conn.execute(f"SET auto_explain.{option}")
        for statement, params in seen:
            nested.clear()
            with conn.transaction():
                conn.execute("SELECT set_config('role', %s, true), set_config('app.workspace_id', %s, true)",
                             (settings.app_role, str(ws)))
                conn.execute("SET LOCAL client_min_messages = log")
                plan = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)]
            print("\n    " + "\n    ".join(plan))
            inner = [m for m in nested if "SECURITY DEFINER" not in m and "Query Text: EXPLAIN" not in m]
            for message in inner:
                print("      nested: " + message.replace("\n", "\n      "))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--docs", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(11)
    words = vocabulary(random.Random(7))
    with tempfile.TemporaryDirectory() as home, scratch_settings(Path(home)) as settings:
        database = (settings.database_url or "").rpartition("/")[2]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with process(["serve", "--no-worker", "--port", str(port)], env_of(settings)) as server:
            wait_healthy(url, server)
            token, workspace = sign_up(url)
            ws = uuid.UUID(base64.b64decode(workspace).decode().split(":", 1)[1])
            started = time.perf_counter()
            asyncio.run(seed(settings, ws, args.contacts, args.records, args.docs))
            with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
                for table in ("contacts", "records", "documents", "document_chunks"):
                    conn.execute(f"VACUUM ANALYZE {table}")
                chunks, size = conn.execute(
                    "SELECT count(*), pg_size_pretty(pg_total_relation_size('document_chunks')) FROM document_chunks"
                ).fetchone()  # type: ignore[misc]
                print(f"seeded {args.contacts:,} contacts, {args.records:,} records, {args.docs:,} documents "
                      f"({chunks:,} chunks, {size}) through the services in {time.perf_counter() - started:.1f} s")
                matches = conn.execute(
                    "SELECT (SELECT count(*) FROM contacts WHERE to_tsvector('english', coalesce(title, '')) @@ q),"
                    " (SELECT count(*) FROM records WHERE search_vector @@ q),"
                    " (SELECT count(*) FROM document_chunks WHERE search_vector @@ q)"
                    " FROM plainto_tsquery('english', %s) q", (COMMON,)).fetchone()
                print(f"{COMMON!r} matches {matches[0]:,} contacts, {matches[1]:,} records, {matches[2]:,} chunks")

                shapes: dict[str, Callable[[], str]] = {
                    "common word": lambda: COMMON,
                    "common topic word": lambda: rng.choice(TOPICS),
                    "two words": lambda: f"{rng.choice(TOPICS)} {rng.choice(words[:300])}",
                    "rare word": lambda: rng.choice(words[3000:]),
                    "phrase": lambda: '"quarterly business review"',
                    "prefix": lambda: rng.choice(TOPICS)[:4] + "*",
                }
                headers = {"authorization": f"Bearer {token}", "x-workspace-id": workspace}
                clients(url, headers, lambda: COMMON, 1, 1.0)  # warm the pools and caches
                print(f"\nsearch(query, first: 20) over every type, {args.clients} clients, {args.seconds:g} s a shape:")
                print(f"  {'shape':<18} {'req/s':>7} {'API CPU ms/req':>15} {'PG CPU ms/req':>14} "
                      f"{'p50 ms':>7} {'p99 ms':>7} {'hits':>5}")
                for shape, make in shapes.items():
                    pg_before, api_before = backend_cpu(conn, database), process_cpu(server.pid)
                    began = time.monotonic()
                    latencies, hits = clients(url, headers, make, args.clients, args.seconds)
                    elapsed = time.monotonic() - began
                    pg_after, api_after = backend_cpu(conn, database), process_cpu(server.pid)
                    pg = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
                    n = len(latencies)
                    latencies.sort()
                    p99 = latencies[min(n - 1, int(n * 0.99))]
                    print(f"  {shape:<18} {n / elapsed:>7.1f} {(api_after - api_before) * 1000 / n:>15.1f} "
                          f"{pg * 1000 / n:>14.1f} {statistics.median(latencies):>7.1f} {p99:>7.1f} {hits / n:>5.1f}")
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the statements of search({COMMON!r}), as {settings.app_role}:")
            asyncio.run(explain(settings, ws, COMMON))


if __name__ == "__main__":
    main()
