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
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # noqa: E402
    CONCURRENCY, CONTACTS, HUB_NEIGHBOURS, RELATIONSHIPS, Baseline, analyze, api_env, database, free_port, global_id,
    load, migrated_settings, seed_graph, serve_api, serve_baseline, sign_up, statements_per_request, stop, workspace_uuid,
)

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
BASELINES = {"/q1": Baseline(BASE_Q1), "/q2": Baseline(BASE_Q2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (15)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    opts = parser.parse_args()

    with database(opts.admin_url) as url, tempfile.TemporaryDirectory() as home:
        settings = migrated_settings(url, opts.redis_url, home)
        env = api_env(url, opts.redis_url, home)
        port, base_port = free_port(), free_port()
        api = serve_api(env, port)
        try:
            token, ws_gid = sign_up(f"http://127.0.0.1:{port}")
            workspace_id = workspace_uuid(ws_gid)
            t0 = time.perf_counter()
            hub = seed_graph(url, workspace_id).contacts[0]
            analyze(url)
            print(f"seeded {CONTACTS:,} contacts and {RELATIONSHIPS:,} relationships in {time.perf_counter() - t0:.1f} s")
            headers = {"authorization": f"Bearer {token}", "x-workspace-id": ws_gid, "content-type": "application/json"}
            statements = await statements_per_request(settings, headers, {"Q1": {"query": Q1}, "Q2": {"query": Q2}})

            graph_ms = []
            async with httpx.AsyncClient(timeout=60) as client:
                for _ in range(6):
                    t = time.perf_counter()
                    r = (await client.post(f"http://127.0.0.1:{port}/graphql", headers=headers,
                                           json={"query": GRAPH, "variables": {"f": global_id("Contact", hub)}})).json()
                    graph_ms.append((time.perf_counter() - t) * 1000)
                nodes = len(r["data"]["relationshipGraph"]["nodes"])
                edges = len(r["data"]["relationshipGraph"]["edges"])

            ours = {name: await load(f"http://127.0.0.1:{port}/graphql", {"query": q}, headers, opts.seconds)
                    for name, q in (("Q1", Q1), ("Q2", Q2))}
        finally:
            stop(api)
        baseline = serve_baseline(url, workspace_id, "nested_query:BASELINES", env, base_port)
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
