"""Sources: CRUD, rules, encryption at rest, pagination, filters and ordering."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from tests.conftest import Account, Api

CREATE = """
mutation($input: CreateSourceInput!) {
  createSource(input: $input) {
    source { id name displayName provider status config hasCredentials createdAt updatedAt lastSyncStartedAt }
    userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $input: UpdateSourceInput!) {
  updateSource(id: $id, input: $input) { source { id name displayName config hasCredentials updatedAt } userErrors { field code } }
}
"""
PAGE = """
query($first: Int, $after: String, $last: Int, $before: String, $filter: SourceFilter, $orderBy: [SourceOrder!]) {
  sources(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { name } }
  }
}
"""


async def create(api: Api, who: Account, name: str, **extra: Any) -> dict[str, Any]:
    data = await api.data(CREATE, {"input": {"name": name, "displayName": name.title(), "provider": "API", **extra}},
                          **who.auth)
    assert data["createSource"]["userErrors"] == [], data
    return data["createSource"]["source"]


async def test_create_read_update_delete(api: Api, alice: Account, settings: Any) -> None:
    source = await create(api, alice, "gmail", config={"folder": "INBOX"}, credentials={"password": "s3cret-pw"})
    assert source["status"] == "ACTIVE" and source["hasCredentials"] is True and source["config"] == {"folder": "INBOX"}
    assert source["createdAt"].endswith("Z") and source["lastSyncStartedAt"] is None

    # Credentials are sealed at rest and never come back.
    with psycopg.connect(settings.database_url) as conn:
        sealed = conn.execute("select credentials_encrypted from sources where name = 'gmail'").fetchone()[0]
    assert b"s3cret-pw" not in bytes(sealed)
    node = await api.data("query($id: ID!) { node(id: $id) { ... on Source { name hasCredentials } } }",
                          {"id": source["id"]}, **alice.auth)
    assert node["node"] == {"name": "gmail", "hasCredentials": True}
    assert "s3cret" not in str(await api.data(PAGE, {}, **alice.auth))

    updated = (await api.data(UPDATE, {"id": source["id"], "input": {"displayName": "Mail", "credentials": {}}},
                              **alice.auth))["updateSource"]["source"]
    assert updated["displayName"] == "Mail" and updated["name"] == "gmail" and updated["config"] == {"folder": "INBOX"}
    assert updated["hasCredentials"] is False and updated["updatedAt"] >= source["updatedAt"]

    paused = await api.data("mutation($id: ID!) { pauseSource(id: $id) { source { status } } }", {"id": source["id"]}, **alice.auth)
    assert paused["pauseSource"]["source"]["status"] == "PAUSED"
    resumed = await api.data("mutation($id: ID!) { resumeSource(id: $id) { source { status } } }", {"id": source["id"]}, **alice.auth)
    assert resumed["resumeSource"]["source"]["status"] == "ACTIVE"

    deleted = await api.data("mutation($id: ID!) { deleteSource(id: $id) { deletedId userErrors { code } } }",
                             {"id": source["id"]}, **alice.auth)
    assert deleted["deleteSource"] == {"deletedId": source["id"], "userErrors": []}
    assert (await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": source["id"]}, **alice.auth))["node"] is None
    again = await api.data("mutation($id: ID!) { deleteSource(id: $id) { deletedId userErrors { code } } }",
                           {"id": source["id"]}, **alice.auth)
    assert again["deleteSource"]["userErrors"] == [{"code": "NOT_FOUND"}]


async def test_names_are_unique_and_checked(api: Api, alice: Account, bob: Account) -> None:
    await create(api, alice, "crm")
    dup = await api.data(CREATE, {"input": {"name": "crm", "displayName": "Other", "provider": "FILE"}}, **alice.auth)
    assert dup["createSource"]["userErrors"][0]["code"] == "CONFLICT"
    assert dup["createSource"]["userErrors"][0]["field"] == ["input", "name"]
    # Unique per workspace only.
    await create(api, bob, "crm")
    bad = await api.data(CREATE, {"input": {"name": "Has Spaces", "displayName": "", "provider": "API", "config": [1]}},
                         **alice.auth)
    assert {tuple(e["field"]) for e in bad["createSource"]["userErrors"]} == {
        ("input", "name"), ("input", "displayName"), ("input", "config")}
    count = await api.data("{ sources { totalCount } }", **alice.auth)
    assert count["sources"]["totalCount"] == 1


async def test_concurrent_creates_of_one_name_make_one_source(api: Api, alice: Account) -> None:
    results = await asyncio.gather(*(
        api.data(CREATE, {"input": {"name": "race", "displayName": "R", "provider": "API"}}, **alice.auth)
        for _ in range(5)
    ))
    made = [r for r in results if r["createSource"]["source"]]
    assert len(made) == 1
    assert all(r["createSource"]["userErrors"][0]["code"] == "CONFLICT" for r in results if r not in made)


async def test_keyset_pages_forward_and_backward(api: Api, alice: Account) -> None:
    for i in range(7):
        await create(api, alice, f"s{i}")
    names: list[str] = []
    after = None
    while True:
        page = (await api.data(PAGE, {"first": 3, "after": after}, **alice.auth))["sources"]
        names += [e["node"]["name"] for e in page["edges"]]
        assert page["totalCount"] == 7
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert names == [f"s{i}" for i in range(7)]

    back: list[str] = []
    before = None
    while True:
        page = (await api.data(PAGE, {"last": 3, "before": before}, **alice.auth))["sources"]
        back = [e["node"]["name"] for e in page["edges"]] + back
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert back == names


async def test_pages_are_stable_under_concurrent_inserts(api: Api, alice: Account) -> None:
    for i in range(4):
        await create(api, alice, f"b{i}")
    order = [{"field": "NAME", "direction": "ASC"}]
    first = (await api.data(PAGE, {"first": 2, "orderBy": order}, **alice.auth))["sources"]
    assert [e["node"]["name"] for e in first["edges"]] == ["b0", "b1"]
    await create(api, alice, "a0")  # sorts before the cursor: must not shift the next page
    await create(api, alice, "b15")  # sorts after: must appear exactly once
    rest = (await api.data(PAGE, {"first": 10, "after": first["pageInfo"]["endCursor"], "orderBy": order}, **alice.auth))
    assert [e["node"]["name"] for e in rest["sources"]["edges"]] == ["b15", "b2", "b3"]


async def test_filters_and_ordering(api: Api, alice: Account) -> None:
    for name, provider in (("alpha", "API"), ("beta", "FILE"), ("gamma", "FILE"), ("delta_x", "IMAP")):
        await create(api, alice, name, provider=provider)

    async def names(filter: dict[str, Any], order: list[dict[str, str]] | None = None) -> list[str]:
        page = await api.data(PAGE, {"filter": filter, "orderBy": order or [{"field": "NAME"}]}, **alice.auth)
        return [e["node"]["name"] for e in page["sources"]["edges"]]

    assert await names({"provider": ["FILE"]}) == ["beta", "gamma"]
    assert await names({"name": {"startsWith": "G"}}) == ["gamma"]
    assert await names({"name": {"contains": "_"}}) == ["delta_x"]  # LIKE wildcards are literal
    assert await names({"name": {"in": ["alpha", "gamma"]}}) == ["alpha", "gamma"]
    assert await names({"name": {"neq": "alpha"}, "provider": ["FILE", "API"]}) == ["beta", "gamma"]
    assert await names({"or": [{"name": {"eq": "alpha"}}, {"provider": ["IMAP"]}]}) == ["alpha", "delta_x"]
    assert await names({"not": {"provider": ["FILE"]}}) == ["alpha", "delta_x"]
    assert await names({"and": [{"provider": ["FILE"]}, {"not": {"name": {"eq": "beta"}}}]}) == ["gamma"]
    assert await names({"createdAt": {"gt": "2000-01-01T00:00:00Z", "lt": "2999-01-01T00:00:00Z"}}) == [
        "alpha", "beta", "delta_x", "gamma"]
    assert await names({}, [{"field": "NAME", "direction": "DESC"}]) == ["gamma", "delta_x", "beta", "alpha"]
    assert await names({"provider": ["FILE"]}, [{"field": "CREATED_AT", "direction": "DESC"}]) == ["gamma", "beta"]

    beta_id = (await api.data(PAGE, {"filter": {"name": {"eq": "beta"}}}, **alice.auth))
    bad_date = await api(PAGE, {"filter": {"createdAt": {"gt": "yesterday"}}}, **alice.auth)
    assert bad_date["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert beta_id["sources"]["totalCount"] == 1


async def test_cursor_of_another_ordering_or_garbage_is_refused(api: Api, alice: Account) -> None:
    await create(api, alice, "one")
    page = (await api.data(PAGE, {"first": 1}, **alice.auth))["sources"]
    garbage = await api(PAGE, {"first": 1, "after": "!!!"}, **alice.auth)
    assert garbage["errors"][0]["message"] == "Invalid cursor"
    assert page["edges"][0]["cursor"]
