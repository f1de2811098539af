"""Search at scale: 10,000 documents of realistic length (about 600 words each, chunked), then
p50/p99 of `search` queries of several shapes through the real service, as the RLS-bound app
role, and the plan of the chunk match showing its GIN index.

    .venv/bin/python bench/search.py [--docs 10000] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.engine import Database  # noqa: E402
from app.services import documents, search  # noqa: E402
from bench.records import ADMIN_URL, new_workspace, principal, scratch_database  # noqa: E402

TOPICS = ["kafka", "postgres", "billing", "invoice", "onboarding", "latency", "migration", "kubernetes", "refund",
          "contract", "renewal", "security", "compliance", "roadmap", "pricing", "churn", "support", "outage"]


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = set()
    while len(words) < size:
        n = rng.randint(3, 10)
        words.add("".join(rng.choice(letters[: rng.randint(8, 26)]) for _ in range(n)))
    return sorted(words)


def document(rng: random.Random, words: list[str], weights: list[float], i: int) -> tuple[str, str]:
    """A title and ~600 words in paragraphs, Zipf-distributed, with a few topic words and phrases."""
    topics = rng.sample(TOPICS, 2)
    paragraphs = []
    for _ in range(rng.randint(4, 8)):
        body = rng.choices(words, weights, k=rng.randint(60, 120))
        for _ in range(rng.randint(0, 3)):
            body.insert(rng.randrange(len(body)), rng.choice(topics))
        if rng.random() < 0.2:
            body.insert(rng.randrange(len(body)), "quarterly business review")
        paragraphs.append(" ".join(body).capitalize() + ".")
    return f"{topics[0].title()} notes {i}", "\n\n".join(paragraphs)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    rng = random.Random(7)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    async with scratch_database(args.admin_url, "search") as (settings, url):
        ws = new_workspace(url)
        p = principal(ws)
        db = Database(settings)
        started = time.perf_counter()
        batch = 500
        for start in range(0, args.docs, batch):
            items = []
            for i in range(start, min(args.docs, start + batch)):
                title, content = document(rng, words, weights, i)
                items.append({"id": f"doc-{i}", "title": title, "content": content, "contentType": "text/plain"})
            async with db.tenant(ws) as s:
                outcomes = await documents.import_documents(s, p, items, None, start)
                await s.commit()
            assert all(o.outcome == "CREATED" for o in outcomes), [o for o in outcomes if o.outcome != "CREATED"][:3]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE documents")
            conn.execute("VACUUM ANALYZE document_chunks")
            chunks, avg_words, size = conn.execute(
                "SELECT count(*), (SELECT avg(array_length(regexp_split_to_array(content, '\\s+'), 1))::int FROM documents), "
                "pg_size_pretty(pg_total_relation_size('document_chunks')) FROM document_chunks").fetchone()
            plan = [r[0] for r in conn.execute(
                "EXPLAIN SELECT c.id FROM document_chunks c WHERE c.search_vector @@ plainto_tsquery('english', 'kafka') "
                "AND c.workspace_id = %s", (ws,))]
        print(f"imported {args.docs:,} documents (~{avg_words} words each) into {chunks:,} chunks "
              f"({size}) through import_documents in {time.perf_counter() - started:.1f} s")
        print("plan of the chunk match inside ctxgraph_chunk_matches():")
        for line in plan:
            print("    " + line)

        shapes = {
            "common topic word": lambda: rng.choice(TOPICS),
            "two words": lambda: f"{rng.choice(TOPICS)} {rng.choice(words[:300])}",
            "rare word": lambda: rng.choice(words[3000:]),
            "phrase": lambda: '"quarterly business review"',
            "prefix": lambda: rng.choice(TOPICS)[:4] + "*",
        }
        print(f"\n{args.queries} queries per shape, search(types: [DOCUMENT], first: 20):")
        print(f"  {'shape':<18} {'p50 ms':>8} {'p99 ms':>8} {'hits':>6}")
        for shape, make in shapes.items():
            times, hits = [], 0
            for _ in range(args.queries):
                query = make()
                began = time.perf_counter()
                async with db.tenant(ws) as s:
                    found = await search.search(s, p, query, ["DOCUMENT"], 20)
                times.append((time.perf_counter() - began) * 1000)
                hits += len(found)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"  {shape:<18} {statistics.median(times):>8.1f} {p99:>8.1f} {hits / args.queries:>6.1f}")
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
