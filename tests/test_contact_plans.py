"""The look-ahead planner (schema.planner): a contact-list query it plans answers exactly as the
resolvers do, in one statement. Each query of the corpus runs against the app and against the
same app with the planner off, and the two responses must be the same JSON, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.http import create_app
from tests.conftest import Account, Api, sign_up
from tests.contacts_support import CONTACT_FIELDS, DELETE, create, record, relate

Q1 = "{ contacts(first: 50) { edges { node { id fullName email } } } }"
Q2 = ("{ contacts(first: 50) { edges { node { id fullName relationships(first: 10) { edges { node { kind "
      "other { ... on Contact { fullName } } } } } } } } }")
FULL = f"""
query($first: Int, $after: String, $last: Int, $before: String, $filter: ContactFilter, $orderBy: [ContactOrder!],
      $search: String, $rels: Int, $direction: Direction, $kinds: [String!]) {{
  contacts(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $orderBy, search: $search) {{
    __typename totalCount
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor __typename }}
    edges {{ __typename cursor node {{
      __typename {CONTACT_FIELDS}
      relationships(first: $rels, direction: $direction, kinds: $kinds) {{
        totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
        edges {{ cursor node {{
          __typename id kind sharedThreadCount sharedCalendarCount lastSeenAt isActive metadata createdAt
          source {{ __typename id }} target {{ ... on Contact {{ fullName deletedAt }} }}
          other {{ ...Who ... on Node {{ id }} }}
        }} }}
      }}
    }} }}
  }}
}}
fragment Who on Contact {{ fullName email tags customFields }}
"""
LEAN = """
query($first: Int, $after: String, $last: Int, $before: String, $filter: ContactFilter, $orderBy: [ContactOrder!], $rels: Int) {
  contacts(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $orderBy) {
    __typename totalCount pageInfo { hasNextPage hasPreviousPage __typename }
    edges { __typename node { __typename id fullName
      relationships(first: $rels) { totalCount edges { node { kind other { ... on Contact { fullName } } } } } } }
  }
}
"""
ALIASED = """
{ __typename people: contacts(first: 3, orderBy: [{field: FULL_NAME, direction: DESC}]) {
    n: totalCount all: edges { at: cursor who: node { key: id name: fullName
      ties: relationships(direction: INCOMING) { edges { node { from: source { ... on Contact { name: fullName } } } } } } } } }
"""


@pytest.fixture(scope="module")
async def unplanned(app: Any) -> AsyncIterator[Api]:
    """The same app, database and secrets, with the planner off."""
    settings = dataclasses.replace(app.state.services.settings, planner=False)
    other = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://test") as client:
        yield Api(client)
    await other.state.services.redis.aclose()
    await other.state.services.db.dispose()


@pytest.fixture(scope="module")
async def world(api: Api) -> dict[str, Any]:
    """A workspace with contacts (one deleted, one with activity), typed edges in both directions
    (one a derived shared_thread edge), and a second workspace with contacts of its own."""
    who = await sign_up(api, workspace="Planned")
    people = []
    for i, name in enumerate(["Ann Éclair", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus"]):
        people.append(await create(api, who, fullName=name, email=f"p{i}@corp{i % 2}.com", tags=["t", f"n{i}"],
                                   customFields={"rank": i, "ratio": 1.5, "nested": {"b": 1, "a": [1, 2]}}))
    ids = [p["id"] for p in people]
    for a, b, kind in [(0, 1, "knows"), (2, 0, "works_with"), (0, 3, "advises"), (4, 0, "knows"), (1, 2, "knows"),
                       (5, 6, "knows"), (6, 1, "advises")]:
        await relate(api, who, ids[a], ids[b], kind, metadata={"since": 2020 + a})
    for contact in (ids[0], ids[1]):
        await record(api, who, contactId=contact, type="message.sent", resourceId="m1", occurredAt="2026-01-01T10:00:00.123456Z",
                     metadata={"threadId": "T1"}, participants=["p0@corp0.com", "p1@corp1.com"])
    assert (await api.data(DELETE, {"id": ids[6]}, **who.auth))["deleteContact"]["userErrors"] == []
    other = await sign_up(api, workspace="Elsewhere")
    await create(api, other, fullName="Stranger", email="s@x.com")
    return {"who": who, "ids": ids, "other": other}


async def same(api: Api, unplanned: Api, query: str, variables: dict[str, Any] | None, auth: dict[str, str]) -> dict[str, Any]:
    planned = await api.post(query, variables, **auth)
    resolved = await unplanned.post(query, variables, **auth)
    assert planned.status_code == resolved.status_code
    assert json.dumps(planned.json()) == json.dumps(resolved.json())
    return dict(planned.json())


CORPUS: list[tuple[str, dict[str, Any]]] = [
    (Q1, {}),
    (Q2, {}),
    (ALIASED, {}),
    (FULL, {}),
    (FULL, {"first": 2, "rels": 1}),
    (FULL, {"last": 3, "rels": 2, "direction": "OUTGOING"}),
    (FULL, {"first": 10, "direction": "INCOMING", "kinds": ["knows", "advises"]}),
    (FULL, {"first": 10, "kinds": ["nothing"]}),
    (FULL, {"filter": {"includeDeleted": True}, "orderBy": [{"field": "UPDATED_AT", "direction": "DESC"}]}),
    (FULL, {"filter": {"or": [{"fullName": {"startsWith": "B"}}, {"tags": {"eq": "n3"}}]}, "rels": 0}),
    (FULL, {"filter": {"email": {"contains": "corp1"}}, "orderBy": [{"field": "FULL_NAME"}]}),
    (FULL, {"orderBy": [{"field": "LAST_CONTACT_AT", "direction": "DESC"}]}),
    (FULL, {"orderBy": [{"field": "STRENGTH", "direction": "DESC"}], "first": 4}),
    (FULL, {"search": "eve"}),
    (FULL, {"filter": {"fullName": {"eq": "nobody"}}}),
    # no list cursor shown: PostgreSQL aggregates the whole list (Prepared.aggregated)
    (LEAN, {}),
    (LEAN, {"first": 2, "rels": 1}),
    (LEAN, {"last": 3, "orderBy": [{"field": "FULL_NAME", "direction": "DESC"}]}),
    (LEAN, {"filter": {"fullName": {"eq": "nobody"}}}),
    (LEAN, {"filter": {"includeDeleted": True}, "last": 10}),
]


@pytest.mark.parametrize("index", range(len(CORPUS)))
async def test_planned_answers_match_the_resolvers(
    api: Api, unplanned: Api, world: dict[str, Any], index: int, sql: Any,
) -> None:
    query, variables = CORPUS[index]
    body = await same(api, unplanned, query, variables, world["who"].auth)
    assert "errors" not in body
    with sql:
        await api.data(query, variables, **world["who"].auth)
    assert sql.count == 2, sql.statements  # the transaction scope and the plan, one round trip (the key is remembered)


async def test_paging_both_ways_with_cursors(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    auth = world["who"].auth
    for order in ([], [{"field": "FULL_NAME", "direction": "DESC"}], [{"field": "STRENGTH"}]):
        page = await same(api, unplanned, FULL, {"first": 2, "orderBy": order}, auth)
        seen = [e["node"]["fullName"] for e in page["data"]["contacts"]["edges"]]
        while page["data"]["contacts"]["pageInfo"]["hasNextPage"]:
            page = await same(api, unplanned, FULL, {"first": 2, "orderBy": order,
                                                     "after": page["data"]["contacts"]["pageInfo"]["endCursor"]}, auth)
            seen += [e["node"]["fullName"] for e in page["data"]["contacts"]["edges"]]
        assert len(seen) == 6 and len(set(seen)) == 6
        back = await same(api, unplanned, FULL, {"last": 2, "orderBy": order,
                                                 "before": page["data"]["contacts"]["pageInfo"]["startCursor"]}, auth)
        assert [e["node"]["fullName"] for e in back["data"]["contacts"]["edges"]] == seen[-4:-2]


async def test_lean_pages_after_and_before_cursors(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    """A page after or before a cursor, when the response shows no cursor (aggregated plan)."""
    auth = world["who"].auth
    first = await same(api, unplanned, FULL, {"first": 2}, auth)
    end = first["data"]["contacts"]["pageInfo"]["endCursor"]
    after = await same(api, unplanned, LEAN, {"first": 2, "after": end}, auth)
    assert after["data"]["contacts"]["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": True, "__typename": "PageInfo"}
    before = await same(api, unplanned, LEAN, {"last": 5, "before": end}, auth)
    names = [e["node"]["fullName"] for e in before["data"]["contacts"]["edges"]]
    assert names == [e["node"]["fullName"] for e in first["data"]["contacts"]["edges"]][:-1]  # before the cursor's own


async def test_bad_arguments_get_the_resolvers_errors(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    auth = world["who"].auth
    for variables in ({"first": 101}, {"first": 1, "last": 1}, {"after": "not a cursor"}, {"rels": 500},
                      {"filter": {"id": {"eq": "bad id"}}}):
        body = await same(api, unplanned, FULL, variables, auth)
        assert body["errors"]


async def test_isolation_scopes_and_anonymous(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    other: Account = world["other"]
    body = await same(api, unplanned, FULL, {}, other.auth)
    assert [e["node"]["fullName"] for e in body["data"]["contacts"]["edges"]] == ["Stranger"]
    who: Account = world["who"]
    read = (await api.data('mutation { createApiKey(input: {name: "r", scopes: ["contacts:read"]}) { secret } }',
                           **who.auth))["createApiKey"]["secret"]
    none = (await api.data('mutation { createApiKey(input: {name: "n", scopes: ["records:read"]}) { secret } }',
                           **who.auth))["createApiKey"]["secret"]
    assert len((await same(api, unplanned, Q2, {}, {"api_key": read}))["data"]["contacts"]["edges"]) == 6
    refused = await same(api, unplanned, Q2, {}, {"api_key": none})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api.post(Q2)).status_code == 200  # anonymous: the resolvers' UNAUTHENTICATED error
    await same(api, unplanned, Q2, {}, {})


async def test_selections_outside_the_plan(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    """Selections outside the planner's subset go to the resolvers and answer as before."""
    auth = world["who"].auth
    for query in (
        "{ contacts(first: 3) { edges { node { fullName intelligence { sentCount } } } } }",
        "{ contacts(first: 3) { edges { node { fullName @include(if: true) relationships { edges { node { weight } } } } } } }",
        "{ contacts(first: 3) { edges { node { relationships(kinds: [\"same_domain\"]) { edges { node { kind } } } } } } }",
        "{ contacts(first: 0) { edges { node { id } } pageInfo { hasNextPage } } }",
        "{ a: contacts(first: 1) { edges { node { id } } } b: contacts(last: 1) { edges { node { id } } } }",
    ):
        await same(api, unplanned, query, None, auth)


async def test_a_planned_nested_query_is_one_statement(api: Api, world: dict[str, Any], sql: Any) -> None:
    auth = world["who"].auth
    with sql:
        await api.data(Q1, **auth)
    q1 = sql.count
    with sql:
        data = await api.data(Q2, **auth)
    assert sql.count == q1 == 2, sql.statements  # the transaction's scope and one statement
    assert len([s for s in sql.statements if "relationships" in s]) == 1
    assert sum(len(e["node"]["relationships"]["edges"]) for e in data["contacts"]["edges"]) == 14



async def test_a_repeated_query_skips_strawberry_and_answers_the_same(
    api: Api, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request of a planned (document, variables) is answered before Strawberry runs
    (app.http GraphQLView._express), with the same status, headers and bytes as the first."""
    auth = world["who"].auth
    query = "query Repeated($n: Int) { repeated: contacts(first: $n) { edges { cursor node { id email } } } }"
    for accept in ("application/json", "application/graphql-response+json"):
        first = await api.post(query, {"n": 4}, headers={"accept": accept}, **auth)

        async def no_strawberry(*_: Any) -> Any:
            raise AssertionError("went through Strawberry")

        with monkeypatch.context() as patch:
            patch.setattr("app.http.GraphQLView.run", no_strawberry)
            again = await api.post(query, {"n": 4}, headers={"accept": accept}, **auth)
        assert again.status_code == first.status_code == 200
        assert again.headers["content-type"] == first.headers["content-type"] == f"{accept}; charset=utf-8"
        assert again.content == first.content
        assert len(again.json()["data"]["repeated"]["edges"]) == 4
    # other variables, another operation name, another workspace: each is its own question
    assert len((await api.data(query, {"n": 2}, **auth))["repeated"]["edges"]) == 2
    other = await api.data(query, {"n": 4}, **world["other"].auth)
    assert [e["node"]["email"] for e in other["repeated"]["edges"]] == ["s@x.com"]


async def test_a_plan_cached_by_one_app_is_not_served_past_anothers_limits(
    api: Api, app: Any, world: dict[str, Any]
) -> None:
    """Plans are kept per process; an app of stricter limits in the same process still refuses."""
    auth = world["who"].auth
    await api.data(Q2, **auth)
    await api.data(Q2, **auth)  # cached, and answered by the express lane
    strict = create_app(dataclasses.replace(app.state.services.settings, max_depth=5))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=strict), base_url="http://test") as client:
            body = await Api(client)(Q2, **auth)
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    finally:
        await strict.state.services.redis.aclose()
        await strict.state.services.db.dispose()
