"""Graph questions under a work budget: the right answers on a dense graph, QUERY_TOO_COMPLEX
past the budget, refused depths, and other clients served while heavy graph questions run."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from app.config import Settings
from app.http import create_app
from tests.conftest import Account, Api, served, sign_up, with_settings
from tests.contacts_support import create, relate

SIZE = 300
PATH = """query($from: ID!, $to: ID!, $maxDepth: Int) { introductionPath(from: $from, to: $to, maxDepth: $maxDepth) {
  contacts { id } edges { source target weight } strength } }"""
GRAPH = """query($focus: ID, $depth: Int, $limit: Int, $minWeight: Float) {
  relationshipGraph(focus: $focus, depth: $depth, limit: $limit, minWeight: $minWeight) {
  nodes { id } edges { source target kinds weight } } }"""


def clique_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def gid(i: int) -> str:
    return base64.b64encode(f"Contact:{clique_id(i)}".encode()).decode()


WEIGHTS: dict[tuple[int, int], float] = {}


def weight(i: int, j: int) -> float:
    """The stored weight of the clique's edge i-j (read back: PostgreSQL's numeric rounding)."""
    return WEIGHTS[(min(i, j), max(i, j))]


@pytest.fixture(scope="module")
async def clique(api: Api, settings: Settings) -> Account:
    """A workspace whose SIZE contacts all know each other (44,850 relationships for 300)."""
    who = await sign_up(api, workspace="Clique")
    ws = base64.b64decode(who.workspace_id).decode().split(":", 1)[1]
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute("""INSERT INTO contacts (id, workspace_id, full_name)
            SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, %(ws)s, 'Clique ' || i
            FROM generate_series(1, %(n)s) i""", {"ws": ws, "n": SIZE})
        conn.execute("""INSERT INTO relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id, weight)
            SELECT gen_random_uuid(), %(ws)s, 'knows', 'Contact', ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
                   'Contact', ('00000000-0000-4000-8000-' || lpad(to_hex(j), 12, '0'))::uuid,
                   round((0.05 + 0.95 * ((i * 7919 + j * 104729) %% 1000) / 1000.0)::numeric, 4)
            FROM generate_series(1, %(n)s) i JOIN generate_series(1, %(n)s) j ON i < j""", {"ws": ws, "n": SIZE})
        conn.execute("ANALYZE relationships")
        rows = conn.execute("SELECT source_id::text, target_id::text, weight FROM relationships WHERE workspace_id = %s",
                            (ws,)).fetchall()
    WEIGHTS.update(((int(a[-12:], 16), int(b[-12:], 16)), w) for a, b, w in rows)
    return who


def best_strength(start: int, goal: int, max_depth: int) -> float:
    """The oracle: the largest product of weights over walks of at most max_depth edges
    (a walk's best equals a path's best, since weights are at most 1)."""
    best = {start: 1.0}
    for _ in range(max_depth):
        step = dict(best)
        for a, value in best.items():
            for b in range(1, SIZE + 1):
                if b != a:
                    w = weight(a, b)
                    if value * w > step.get(b, 0.0):
                        step[b] = value * w
        best = step
    return best[goal]


@pytest.fixture
async def small_budget(settings: Settings) -> AsyncIterator[Api]:
    """The app with a graph budget of 1,000 relationship rows and 100 returned edges."""
    application = create_app(with_settings(settings, graph_budget_edges=1_000, graph_max_edges=100))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as client:
        yield Api(client)
    await application.state.services.redis.aclose()
    await application.state.services.db.dispose()


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    (error,) = body["errors"]
    return error["extensions"]["code"], error["message"]


async def test_the_clique_gives_the_strongest_path_fast(api: Api, clique: Account) -> None:
    started = time.perf_counter()
    path = (await api.data(PATH, {"from": gid(1), "to": gid(SIZE), "maxDepth": 6}, **clique.auth))["introductionPath"]
    elapsed = time.perf_counter() - started
    ids = [c["id"] for c in path["contacts"]]
    assert ids[0] == gid(1) and ids[-1] == gid(SIZE) and len(set(ids)) == len(ids) == len(path["edges"]) + 1
    assert math.isclose(path["strength"], math.prod(e["weight"] for e in path["edges"]), abs_tol=1e-6)
    assert math.isclose(path["strength"], best_strength(1, SIZE, 6), abs_tol=1e-6)
    assert elapsed < 5, elapsed
    direct = (await api.data(PATH, {"from": gid(1), "to": gid(SIZE), "maxDepth": 1}, **clique.auth))["introductionPath"]
    assert direct["strength"] == weight(1, SIZE) and len(direct["edges"]) == 1


async def test_the_clique_graph_past_the_edge_cap_is_query_too_complex(api: Api, clique: Account) -> None:
    started = time.perf_counter()
    body = await api(GRAPH, {"focus": gid(1), "depth": 6, "limit": 1000}, **clique.auth)
    assert time.perf_counter() - started < 5
    code, message = error_of(body)
    assert code == "QUERY_TOO_COMPLEX" and "5,000 edges" in message and "lower limit" in message
    assert body["data"] is None
    small = (await api.data(GRAPH, {"focus": gid(1), "depth": 6, "limit": 60}, **clique.auth))["relationshipGraph"]
    assert len(small["nodes"]) == 60 and len(small["edges"]) == 60 * 59 // 2  # 1,770 edges: under the cap


async def test_past_a_smaller_budget_path_and_walk_are_query_too_complex(small_budget: Api, clique: Account) -> None:
    body = await small_budget(PATH, {"from": gid(1), "to": gid(SIZE), "maxDepth": 3}, **clique.auth)
    code, message = error_of(body)
    assert code == "QUERY_TOO_COMPLEX" and "more than 1,000 relationships" in message and "lower maxDepth" in message
    direct = (await small_budget.data(PATH, {"from": gid(1), "to": gid(2), "maxDepth": 1}, **clique.auth))
    assert direct["introductionPath"]["strength"] == weight(1, 2)  # 299 rows read: within the budget
    code, message = error_of(await small_budget(GRAPH, {"focus": gid(1), "depth": 2, "limit": 10}, **clique.auth))
    assert code == "QUERY_TOO_COMPLEX" and "lower depth" in message
    code, message = error_of(await small_budget(GRAPH, {"focus": gid(1), "depth": 1, "limit": 20}, **clique.auth))
    assert code == "QUERY_TOO_COMPLEX" and "more than 100 edges" in message
    fine = (await small_budget.data(GRAPH, {"focus": gid(1), "depth": 1, "limit": 10}, **clique.auth))["relationshipGraph"]
    assert len(fine["nodes"]) == 10 and len(fine["edges"]) == 45


async def test_depth_and_limit_caps_are_refused_with_a_clear_message(api: Api, alice: Account) -> None:
    a, b = await create(api, alice, fullName="A"), await create(api, alice, fullName="B")
    cases = [
        (PATH, {"from": a["id"], "to": b["id"], "maxDepth": 7}, "maxDepth must be between 1 and 6"),
        (PATH, {"from": a["id"], "to": b["id"], "maxDepth": 0}, "maxDepth must be between 1 and 6"),
        (GRAPH, {"focus": a["id"], "depth": 7}, "depth must be between 0 and 6"),
        (GRAPH, {"focus": a["id"], "limit": 1001}, "limit must be between 1 and 1000"),
    ]
    for query, variables, message in cases:
        assert error_of(await api(query, variables, **alice.auth)) == ("BAD_USER_INPUT", message)


async def test_merged_kinds_weigh_the_same_in_the_path_as_in_the_graph(api: Api, alice: Account, settings: Settings) -> None:
    a, b, c = [await create(api, alice, fullName=n) for n in "ABC"]
    await relate(api, alice, a["id"], b["id"], "knows", weight=0.1)
    await relate(api, alice, b["id"], c["id"], "knows", weight=0.9)
    raw = {k: base64.b64decode(v["id"]).decode().split(":", 1)[1] for k, v in (("a", a), ("b", b))}
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute("""INSERT INTO relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id,
                          shared_thread_count, shared_calendar_count, last_seen_at)
            SELECT gen_random_uuid(), workspace_id, 'shared_thread', 'Contact', %(b)s, 'Contact', %(a)s, 6, 0, now()
            FROM contacts WHERE id = %(a)s""", raw)
        conn.execute("""INSERT INTO relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id,
                          shared_thread_count, shared_calendar_count, last_seen_at)
            SELECT gen_random_uuid(), workspace_id, 'shared_calendar_event', 'Contact', %(a)s, 'Contact', %(b)s, 0, 4, now()
            FROM contacts WHERE id = %(a)s""", raw)
    path = (await api.data(PATH, {"from": a["id"], "to": c["id"]}, **alice.auth))["introductionPath"]
    expected = round(math.log(11) / math.log(50), 4)  # 10 shared threads and events together
    assert [e["weight"] for e in path["edges"]] == [expected, 0.9]
    assert path["strength"] == round(expected * 0.9, 6)
    graph = (await api.data(GRAPH, {"focus": a["id"], "depth": 2}, **alice.auth))["relationshipGraph"]
    assert sorted(e["weight"] for e in graph["edges"]) == [expected, 0.9]


async def test_other_clients_are_served_while_heavy_graph_questions_run(settings: Settings, clique: Account) -> None:
    other = None
    with served(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            api = Api(client)
            other = await sign_up(api, workspace="Bystander")
            await create(api, other, fullName="Someone")
            stop = asyncio.Event()
            heavy_answers: list[dict[str, Any]] = []

            async def heavy() -> None:
                while not stop.is_set():
                    heavy_answers.append(await api(PATH, {"from": gid(2), "to": gid(SIZE - 1), "maxDepth": 6}, **clique.auth))

            workers = [asyncio.create_task(heavy()) for _ in range(4)]
            await asyncio.sleep(1.0)
            latencies = []
            until = time.monotonic() + 6
            while time.monotonic() < until:
                started = time.perf_counter()
                await api.data("{ contacts(first: 5) { edges { node { id fullName } } } }", **other.auth)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            stop.set()
            await asyncio.gather(*workers)
    latencies.sort()
    assert heavy_answers and all("errors" not in a for a in heavy_answers)
    assert latencies[int(len(latencies) * 0.9)] < 0.3, latencies[-10:]
    assert latencies[-1] < 1.5, latencies[-10:]


async def test_graph_questions_take_turns_and_a_long_line_is_refused(api: Api, clique: Account) -> None:
    from app.services import relationships

    limits = relationships.GraphLimits(concurrency=1)
    asked = relationships.WAITING_PER_TURN + 4
    async with relationships._turn(limits):  # the one turn of this process is taken: every question waits
        tasks = [asyncio.create_task(api(PATH, {"from": gid(3), "to": gid(SIZE - 2), "maxDepth": 6}, **clique.auth))
                 for _ in range(asked)]
        turns = relationships._turns[asyncio.get_running_loop()]
        deadline = time.monotonic() + 30
        while sum(t.done() for t in tasks) < asked - relationships.WAITING_PER_TURN or turns.waiting < relationships.WAITING_PER_TURN:
            assert time.monotonic() < deadline, (turns.waiting, sum(t.done() for t in tasks))
            await asyncio.sleep(0.01)
        refused = [t.result() for t in tasks if t.done()]
    for body in refused:
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["retryAfter"] == 1
        assert "other graph questions" in error["message"]
    answered = [b["data"]["introductionPath"] for b in await asyncio.gather(*tasks) if "errors" not in b]
    assert len(answered) == relationships.WAITING_PER_TURN and len({a["strength"] for a in answered}) == 1
