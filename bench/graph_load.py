"""Graph load: other tenants' latency while four clients run the heaviest graph queries.

Builds a 300-contact clique (44,850 relationships, SQL generate_series) in a fresh workspace of a
scratch database, serves the API as `ctxgraph serve --no-worker` (one process), and for each
heavy query runs 4 clients back to back on it while a client of another tenant times a trivial
query (`contacts(first: 5)`) one request after another; every query is sent as Apollo Client
sends it (named, `__typename` on every selection, sizes as variables). Prints the heavy queries' latency and
answers (path length and strength, node and edge counts, or the error code) and the other
tenant's p50 / p99 / max, idle first for reference.

    .venv/bin/python bench/graph_load.py [--seconds 20] [--size 300]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs_support import env_of, process, scratch_settings, wait_healthy  # noqa: E402
from support import free_port, sign_up  # noqa: E402

HEAVY_CLIENTS = 4
# As Apollo Client sends them: named operations, __typename on every selection, sizes as variables.
TRIVIAL = """query Bystander($first: Int!) { contacts(first: $first) { __typename
  edges { __typename node { __typename id fullName } } } }"""
PATH = """query IntroductionPath($from: ID!, $to: ID!, $maxDepth: Int) {
  introductionPath(from: $from, to: $to, maxDepth: $maxDepth) { __typename
    contacts { __typename id } edges { __typename weight } strength } }"""
GRAPH = """query RelationshipGraph($focus: ID!, $depth: Int, $limit: Int) {
  relationshipGraph(focus: $focus, depth: $depth, limit: $limit) { __typename
    nodes { __typename id fullName } edges { __typename source target kinds weight lastSeenAt } } }"""

CLIQUE = """
INSERT INTO contacts (id, workspace_id, full_name, email)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, %(ws)s, 'Clique ' || i, 'clique' || i || '@example.com'
FROM generate_series(1, %(n)s) i;
INSERT INTO relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id, weight)
SELECT gen_random_uuid(), %(ws)s, 'knows',
       'Contact', ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       'Contact', ('00000000-0000-4000-8000-' || lpad(to_hex(j), 12, '0'))::uuid,
       round((0.05 + 0.95 * ((i * 7919 + j * 104729) %% 1000) / 1000.0)::numeric, 4)
FROM generate_series(1, %(n)s) i JOIN generate_series(1, %(n)s) j ON i < j;
ANALYZE contacts;
ANALYZE relationships;
"""


def contact_gid(i: int) -> str:
    return base64.b64encode(f"Contact:00000000-0000-4000-8000-{i:012x}".encode()).decode()


def workspace_uuid(gid: str) -> str:
    return base64.b64decode(gid).decode().split(":", 1)[1]


def build_clique(database_url: str, workspace_gid: str, n: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in CLIQUE.split(";")[:-1]:
            conn.execute(statement, {"ws": workspace_uuid(workspace_gid), "n": n})


def summary(body: dict[str, Any]) -> str:
    """What the heavy query answered, in a few words."""
    if body.get("errors"):
        error = body["errors"][0]
        return f"{error.get('extensions', {}).get('code')}: {error['message'][:110]}"
    data = body["data"]
    if "introductionPath" in data:
        path = data["introductionPath"]
        return "no path" if path is None else f"{len(path['edges'])} hops, strength {path['strength']}"
    if "contacts" in data:
        return "ok"
    graph = data["relationshipGraph"]
    return f"{len(graph['nodes'])} nodes, {len(graph['edges'])} edges"


def loop(url: str, headers: dict[str, str], body: dict[str, Any], until: Callable[[], bool],
         latencies: list[float], answers: dict[str, int]) -> None:
    """One client posting `body` back to back until told to stop."""
    with httpx.Client(headers=headers, timeout=600) as client:
        while not until():
            started = time.perf_counter()
            response = client.post(f"{url}/graphql", content=orjson.dumps(body))
            latencies.append(time.perf_counter() - started)
            answer = summary(orjson.loads(response.content)) if response.status_code == 200 else f"HTTP {response.status_code}"
            answers[answer] = answers.get(answer, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def phase(url: str, trivial_headers: dict[str, str], heavy_headers: dict[str, str], heavy: dict[str, Any] | None,
          seconds: float) -> tuple[list[float], list[float], dict[str, int]]:
    """The trivial query's latencies while HEAVY_CLIENTS clients run `heavy` (none: idle)."""
    stop = threading.Event()
    heavy_latencies: list[float] = []
    answers: dict[str, int] = {}
    trivial_latencies: list[float] = []
    threads = [threading.Thread(target=loop, args=(url, heavy_headers, heavy, stop.is_set, heavy_latencies, answers))
               for _ in range(HEAVY_CLIENTS if heavy else 0)]
    for t in threads:
        t.start()
    time.sleep(1.0 if heavy else 0)  # let the heavy clients get going
    deadline = time.monotonic() + seconds
    trivial = {"query": TRIVIAL, "operationName": "Bystander", "variables": {"first": 5}}
    loop(url, trivial_headers, trivial, lambda: time.monotonic() > deadline, trivial_latencies, {})
    stop.set()
    for t in threads:
        t.join()
    return trivial_latencies, heavy_latencies, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase (20)")
    parser.add_argument("--size", type=int, default=300, help="contacts in the clique (300)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, scratch_settings(Path(home), graphiql=False) as settings:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with process(["serve", "--no-worker", "--port", str(port)], env_of(settings)) as server:
            wait_healthy(url, server)
            heavy_token, heavy_ws = sign_up(url)
            other_token, other_ws = sign_up(url)
            started = time.perf_counter()
            build_clique(settings.database_url or "", heavy_ws, opts.size)
            edges = opts.size * (opts.size - 1) // 2
            print(f"clique of {opts.size} contacts, {edges:,} relationships, built in {time.perf_counter() - started:.1f} s")
            heavy_headers = {"authorization": f"Bearer {heavy_token}", "x-workspace-id": heavy_ws,
                             "content-type": "application/json"}
            trivial_headers = {"authorization": f"Bearer {other_token}", "x-workspace-id": other_ws,
                               "content-type": "application/json"}
            workloads: list[tuple[str, dict[str, Any] | None]] = [
                ("idle", None),
                ("introductionPath maxDepth 6", {"query": PATH, "operationName": "IntroductionPath",
                                                  "variables": {"from": contact_gid(1), "to": contact_gid(opts.size), "maxDepth": 6}}),
                ("relationshipGraph depth 6 limit 1000", {"query": GRAPH, "operationName": "RelationshipGraph",
                                                          "variables": {"focus": contact_gid(1), "depth": 6, "limit": 1000}}),
            ]
            print(f"\n{HEAVY_CLIENTS} heavy clients per workload, {opts.seconds:.0f} s each; the other tenant's "
                  f"trivial query one request after another\n")
            for name, heavy in workloads:
                trivial, heavy_latencies, answers = phase(url, trivial_headers, heavy_headers, heavy, opts.seconds)
                line = (f"{name:38} other tenant: {len(trivial):5} requests, p50 {percentile(trivial, 0.5):7.1f} ms, "
                        f"p99 {percentile(trivial, 0.99):7.1f} ms, max {max(trivial) * 1000:7.1f} ms")
                print(line)
                if heavy_latencies:
                    print(f"{'':38} heavy: {len(heavy_latencies)} answers, median {statistics.median(heavy_latencies) * 1000:.0f} ms, "
                          f"max {max(heavy_latencies) * 1000:.0f} ms")
                    for answer, count in sorted(answers.items(), key=lambda kv: -kv[1]):
                        print(f"{'':38}   {count:4} x {answer}")


if __name__ == "__main__":
    main()
