"""Every limit of DESIGN.md: depth, aliases, tokens, node count, page size, rate limit."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx

from app.http import create_app
from tests.conftest import Account, Api, early_in_a_window, unauthenticated

GQL = "application/graphql-response+json"


@asynccontextmanager
async def api_with(settings: Any, **changes: Any) -> AsyncIterator[Api]:
    """The app with `changes`, reached from an address of its own: what other tests' requests
    counted against theirs (failed authentications included) leaves its budgets alone."""
    await asyncio.sleep(early_in_a_window())
    app = create_app(replace(settings, **changes))
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(client)
    await app.state.services.db.dispose()
    await app.state.services.redis.aclose()


def too_complex(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    return error["message"]


async def test_depth_limit(settings: Any, alice: Account) -> None:
    deep = "{ members { edges { node { user { id } } } } }"  # depth 5
    async with api_with(settings, max_depth=4) as api:
        assert "depth 5" in too_complex(await api.post(deep, **alice.auth, headers={"accept": GQL}))
    async with api_with(settings, max_depth=5) as api:
        assert (await api.data(deep, **alice.auth))["members"]["edges"]


async def test_default_depth_limit_is_ten_and_ignores_introspection(api: Api, settings: Any) -> None:
    assert settings.max_depth == 10
    introspection = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }"
    assert (await api.data(introspection))["__schema"]["types"]


async def test_alias_limit(api: Api) -> None:
    ok = "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }"
    assert len((await api.data(ok))) == 30
    over = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"
    assert "31 aliases" in too_complex(await api.post(over, headers={"accept": GQL}))


async def test_token_limit(api: Api) -> None:
    over = "{ " + "__typename " * 20_000 + "}"
    assert "tokens" in too_complex(await api.post(over, headers={"accept": GQL}))


async def test_node_count_limit_counts_page_sizes_and_variables(settings: Any, alice: Account) -> None:
    query = "query($n: Int) { a: sources(first: $n) { edges { node { id } } } b: members(first: 100) { totalCount } }"
    async with api_with(settings, max_nodes=150) as api:
        message = too_complex(await api.post(query, {"n": 100}, **alice.auth, headers={"accept": GQL}))
        assert "200 nodes" in message
        assert (await api.data(query, {"n": 10}, **alice.auth))["a"]["edges"] == []
        # Without first/last a connection counts as its default page of 20.
        defaults = "{ " + " ".join(f"s{i}: sources {{ totalCount }}" for i in range(8)) + " }"
        assert "160 nodes" in too_complex(await api.post(defaults, **alice.auth, headers={"accept": GQL}))


async def test_page_size_over_100_is_refused(api: Api, alice: Account) -> None:
    body = await api("{ sources(first: 101) { totalCount } }", **alice.auth)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 0 and 100" in body["errors"][0]["message"]
    assert (await api("{ sources(last: -1) { totalCount } }", **alice.auth))["errors"]
    both = await api("{ sources(first: 1, last: 1) { totalCount } }", **alice.auth)
    assert "either first or last" in both["errors"][0]["message"]
    assert (await api.data("{ sources(first: 100) { totalCount } }", **alice.auth))["sources"]["totalCount"] == 0


async def test_rate_limit_per_user(settings: Any, alice: Account, bob: Account) -> None:
    async with api_with(settings, rate_limit_per_minute=3) as api:
        for _ in range(3):
            assert (await api.post("{ viewer { scopes } }", **alice.auth)).status_code == 200
        limited = await api.post("{ viewer { scopes } }", **alice.auth, headers={"accept": GQL})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # Another user has a budget of their own.
        assert (await api.post("{ viewer { scopes } }", **bob.auth)).status_code == 200


async def test_node_count_covers_ids_lists_and_limits_by_default(settings: Any, alice: Account) -> None:
    async with api_with(settings, max_nodes=250) as api:
        ids = [alice.workspace_id] * 3
        query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } sources(first: 100) { totalCount } }"
        assert (await api.data(query, {"ids": ids}, **alice.auth))["nodes"][0]["id"] == alice.workspace_id
        many = await api.post(query, {"ids": [alice.workspace_id] * 200}, **alice.auth, headers={"accept": GQL})
        assert "300 nodes" in too_complex(many)
        # relationshipGraph's default limit (200) counts although the field is not a list
        graph = "{ relationshipGraph { nodes { id } } sources(first: 100) { totalCount } }"
        assert "300 nodes" in too_complex(await api.post(graph, **alice.auth, headers={"accept": GQL}))


async def test_failed_credentials_are_limited_per_address_before_any_look_up(settings: Any, alice: Account) -> None:
    """Past the address's budget of failed authentications, guesses from it are refused before
    any look-up; a valid signed token is no guess and still works (tests/test_credentials_hardening.py
    has the rest: offline refusals, per-credential budgets, vouched keys)."""
    async with api_with(settings, auth_failures_per_address=3) as api:
        for _ in range(3):
            guess = "cgk_" + secrets.token_urlsafe(32)  # the shape of keys issued before the checksum
            assert unauthenticated(await api.post("{ viewer { scopes } }", api_key=guess))
        refused = await api.post("{ viewer { scopes } }", api_key="cgk_" + secrets.token_urlsafe(32), headers={"accept": GQL})
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await api.post("{ viewer { scopes } }", **alice.auth, headers={"accept": GQL})).status_code == 200
