"""Records at scale: 1,000,000 records of one object type, a filter on a custom INT field with
ordering by a custom DATETIME field; first page and a page deep in the cursor chain, through the
real service (as the RLS-bound app role), with the plans' index usage.

    .venv/bin/python bench/records.py [--rows 1000000] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Builds a scratch database with the migrations, fills it with generate_series, drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings  # noqa: E402
from app.db.engine import Database  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.services import object_types, records  # noqa: E402
from app.services.access import Principal  # noqa: E402
from app.services.pagination import PageArgs, encode_cursor  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@asynccontextmanager
async def scratch_database(admin_url: str, tag: str) -> AsyncIterator[tuple[Settings, str]]:
    """(settings, owner url) of a fresh, migrated database, dropped afterwards."""
    name = f"ctxgraph_bench_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    settings = Settings(database_url=url, statement_timeout_ms=300_000)
    try:
        upgrade(settings)
        yield settings, url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_workspace(url: str) -> uuid.UUID:
    ws = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO workspaces (id, name, slug) VALUES (%s, 'Bench', %s)", (ws, f"bench-{ws.hex[:8]}"))
    return ws


def principal(ws: uuid.UUID) -> Principal:
    return Principal(user_id=uuid.uuid4(), workspace_id=ws, role="OWNER", scopes=frozenset({"*"}))


class Capture:
    """The last SELECT on records the engine sent, with its parameters (to EXPLAIN it)."""

    def __init__(self, engine: Any) -> None:
        self.statement: tuple[str, Any] | None = None
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().startswith("SELECT records.id"):
            self.statement = (statement, parameters)


async def timed(fn: Callable[[], Any], runs: int = 7) -> tuple[float, Any]:
    """Median wall time in ms of `runs` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def explain(db: Database, ws: uuid.UUID, statement: tuple[str, Any]) -> list[str]:
    async with db.tenant(ws) as s:
        conn = await s.connection()
        raw = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement[0], statement[1])
        return [row[0] for row in raw]


def show_plan(title: str, plan: list[str]) -> None:
    print(f"  plan ({title}):")
    for line in plan:
        print("    " + line)
    scans = sorted({line.split(" using ")[1].split()[0] for line in plan if " using " in line}
                   | {line.split("Index Scan on ")[1].split()[0] for line in plan if "Index Scan on " in line})
    seq = [line.strip() for line in plan if "Seq Scan" in line]
    print(f"  indexes used: {', '.join(scans) or 'none'}; sequential scans: {len(seq)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    async with scratch_database(args.admin_url, "records") as (settings, url):
        ws = new_workspace(url)
        p = principal(ws)
        db = Database(settings)
        async with db.tenant(ws) as s:
            ot = await object_types.create_object_type(s, p, name="ticket", display_name="Ticket", field_definitions=[
                {"name": "priority", "fieldType": "INT"}, {"name": "due", "fieldType": "DATETIME"},
                {"name": "summary", "fieldType": "STRING"},
            ])
            await s.commit()
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '512MB'")
            # Bulk load without the secondary indexes, then build them: much faster than
            # maintaining them row by row; the schema ends as the migration made it.
            indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
                                   "('records', 'record_values') AND indexname NOT LIKE '%%pkey'").fetchall()
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
            conn.execute(
                """INSERT INTO records (id, workspace_id, object_type_id, name, fields, version, search_text)
                   SELECT gen_random_uuid(), %(ws)s, %(ot)s, 'Ticket ' || g,
                          jsonb_build_object('priority', (g * 31) %% 100, 'summary', 'Summary ' || (g %% 977),
                            'due', to_char(timestamp '2024-01-01' + ((g::bigint * 7919) %% %(n)s) * interval '1 minute',
                                           'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                          1, 'Summary ' || (g %% 977)
                   FROM generate_series(1, %(n)s) g""", {"ws": ws, "ot": ot.id, "n": args.rows})
            for field, column, expr in (("priority", "num", "(fields->>'priority')::float8"),
                                        ("due", "at", "(fields->>'due')::timestamptz"),
                                        ("summary", "txt", "fields->>'summary'")):
                conn.execute(f"""INSERT INTO record_values (record_id, workspace_id, object_type_id, field, {column})
                                 SELECT id, workspace_id, object_type_id, %(f)s, {expr} FROM records
                                 WHERE object_type_id = %(ot)s""", {"f": field, "ot": ot.id})
            for _, definition in indexes:
                conn.execute(definition)
            conn.execute("VACUUM ANALYZE records")
            conn.execute("VACUUM ANALYZE record_values")
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('records') + "
                                "pg_total_relation_size('record_values'))").fetchone()[0]
        print(f"generated {args.rows:,} records (+ {3 * args.rows:,} typed values) in "
              f"{time.perf_counter() - started:.1f} s; records + values take {size}")

        where = SimpleNamespace(fields=[SimpleNamespace(field="priority", eq=None, neq=None, in_=None, contains=None,
                                                        gt=None, gte=90, lt=None, lte=None, is_null=None)])
        order = [records.Order(custom_field="due")]
        capture = Capture(db.engine)

        async def page(after: str | None = None) -> Any:
            async with db.tenant(ws) as s:
                return await records.list_records(s, p, PageArgs(first=20, after=after), object_type_id=ot.id,
                                                  object_type_given=True, where=where, order=order)

        ms, first = await timed(page)
        first_stmt = capture.statement
        print(f"\nfilter priority >= 90, order by due ASC, first 20: median {ms:.1f} ms "
              f"(first due {first.items[0].fields['due']}, priority {first.items[0].fields['priority']})")
        assert first_stmt is not None
        show_plan("first page", await explain(db, ws, first_stmt))

        depth = min(50_000, args.rows // 20)
        with psycopg.connect(url) as conn:
            due, rid = conn.execute(
                """SELECT v.at, v.record_id FROM record_values v JOIN record_values pr
                     ON pr.record_id = v.record_id AND pr.field = 'priority' AND pr.num >= 90
                   WHERE v.object_type_id = %s AND v.field = 'due' ORDER BY v.at, v.record_id OFFSET %s LIMIT 1""",
                (ot.id, depth)).fetchone()
        cursor = encode_cursor([due, rid])
        ms, deep = await timed(lambda: page(cursor))
        deep_stmt = capture.statement
        print(f"\nthe page after row {depth:,} of the filtered order (cursor chain): median {ms:.1f} ms "
              f"(due from {deep.items[0].fields['due']})")
        assert deep_stmt is not None
        show_plan("deep page", await explain(db, ws, deep_stmt))

        ms, _ = await timed(lambda: records_count(db, ws, p, ot.id, where))
        print(f"\ntotalCount of the filter (10% of the rows): median {ms:.1f} ms")
        await db.dispose()


async def records_count(db: Database, ws: uuid.UUID, p: Principal, ot_id: uuid.UUID, where: Any) -> int:
    async with db.tenant(ws) as s:
        page = await records.list_records(s, p, PageArgs(first=1), object_type_id=ot_id, object_type_given=True,
                                          where=where)
        return await page.count()


if __name__ == "__main__":
    asyncio.run(main())
