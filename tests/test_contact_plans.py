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
from schema.plan.runner import FALLBACKS
from tests.contacts_support import CONTACT_FIELDS, DELETE, create, record, relate
from tests.test_records import make, make_type

CREATE_DOCUMENT = "mutation($input: CreateDocumentInput!) { createDocument(input: $input) { document { id } } }"
UPDATE_DOCUMENT = "mutation($id: ID!, $input: UpdateDocumentInput!) { updateDocument(id: $id, input: $input) { document { id } } }"
LINK_DOCUMENT = "mutation($d: ID!, $n: ID!) { linkDocument(documentId: $d, nodeId: $n) { document { id } } }"

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
    documents = []
    for title, owner in (("Plan", ids[0]), ("Memo", ids[0]), ("Note", ids[1])):
        made = (await api.data(CREATE_DOCUMENT, {"input": {"title": title, "content": f"{title} one", "tags": ["d"],
                                                          "metadata": {"k": title}, "authorId": owner}}, **who.auth))
        document = made["createDocument"]["document"]["id"]
        await api.data(UPDATE_DOCUMENT, {"id": document, "input": {"content": f"{title} two"}}, **who.auth)
        await api.data(LINK_DOCUMENT, {"d": document, "n": owner}, **who.auth)
        documents.append(document)
    ticket = await make_type(api, who, "deal", [{"name": "stage", "fieldType": "STRING"}, {"name": "amount", "fieldType": "FLOAT"}])
    deal = await make(api, who, ticket, {"stage": "won", "amount": 12.5}, name="Big deal")
    await relate(api, who, ids[0], deal["id"], "owns")
    await api.data(LINK_DOCUMENT, {"d": documents[0], "n": deal["id"]}, **who.auth)
    other = await sign_up(api, workspace="Elsewhere")
    await create(api, other, fullName="Stranger", email="s@x.com")
    await make(api, who, ticket, {"stage": "lost", "amount": 3}, name="Small deal")
    return {"who": who, "ids": ids, "other": other, "documents": documents, "record": deal["id"], "deal_type": ticket}


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
    read = (await api.data('mutation { createApiKey(input: {name: "r", scopes: ["contacts:read", "records:read"]}) { secret } }',
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
    assert sum(len(e["node"]["relationships"]["edges"]) for e in data["contacts"]["edges"]) == 15



async def test_a_repeated_query_runs_its_compiled_statement_with_new_cursors_and_ids(
    api: Api, app: Any, world: dict[str, Any], sql: Any
) -> None:
    """A plan is compiled once per document and shape of its variables: a new cursor or a new
    node id is a bound parameter of the same statement, and the answers stay the resolvers'."""
    auth, plans = world["who"].auth, app.state.services.plans
    query = ("query Page($n: Int, $after: String) { contacts(first: $n, after: $after) { "
             "edges { cursor node { id fullName } } pageInfo { hasNextPage endCursor } } }")
    page = await api.data(query, {"n": 2}, **auth)
    compiled = plans.compiled
    seen = [e["node"]["fullName"] for e in page["contacts"]["edges"]]
    while page["contacts"]["pageInfo"]["hasNextPage"]:
        page = await api.data(query, {"n": 2, "after": page["contacts"]["pageInfo"]["endCursor"]}, **auth)
        seen += [e["node"]["fullName"] for e in page["contacts"]["edges"]]
    assert len(seen) == 6 == len(set(seen))
    assert plans.compiled == compiled + 1  # the first page after a cursor; every later one reuses it
    node = "query Who($id: ID!) { node(id: $id) { __typename id ... on Contact { fullName } } }"
    names = []
    for contact in world["ids"][:6]:
        with sql:
            names.append((await api.data(node, {"id": contact}, **auth))["node"]["fullName"])
        assert sql.count == 2, sql.statements
    assert names == ["Ann Éclair", "Bob", "Cy", "Dee", "Eve", "Fay"]
    assert plans.compiled == compiled + 2
    # other page sizes are other statements (a LIMIT is a literal); another workspace shares them
    assert len((await api.data(query, {"n": 1}, **auth))["contacts"]["edges"]) == 1
    other = await api.data(query, {"n": 2}, **world["other"].auth)
    assert [e["node"]["fullName"] for e in other["contacts"]["edges"]] == ["Stranger"]
    assert (await api.data(node, {"id": world["ids"][0]}, **world["other"].auth))["node"] is None


async def test_a_plan_cached_by_one_app_is_not_served_past_anothers_limits(
    api: Api, app: Any, world: dict[str, Any]
) -> None:
    """Plans are kept per process; an app of stricter limits in the same process still refuses."""
    auth = world["who"].auth
    await api.data(Q2, **auth)
    await api.data(Q2, **auth)  # cached
    strict = create_app(dataclasses.replace(app.state.services.settings, max_depth=5))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=strict), base_url="http://test") as client:
            body = await Api(client)(Q2, **auth)
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    finally:
        await strict.state.services.redis.aclose()
        await strict.state.services.db.dispose()


# ------------------------------------------------------------------ queries as Apollo Client sends them
# (named operations, variables, fragments, and __typename in every selection set, beside and
# inside inline fragments alike)

ROW = "fragment ContactRow on Contact { __typename id fullName email company title tags updatedAt }"
APOLLO: dict[str, str] = {
    "list": """query ContactsPage($first: Int!, $after: String) {
  contacts(first: $first, after: $after) { __typename
    edges { __typename cursor node { __typename ...ContactRow } }
    pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor } } }
""" + ROW,
    "network": """query Network($first: Int!, $rels: Int!) {
  contacts(first: $first) { __typename edges { __typename node { __typename id fullName
    relationships(first: $rels) { __typename edges { __typename node { __typename id kind weight
      other { __typename ... on Contact { __typename id fullName } ... on Record { __typename id name } ... on Node { id } } } } } } } } }""",
    "detail": """query ContactDetail($id: ID!, $activity: Int, $rels: Int, $docs: Int) {
  node(id: $id) { __typename id ... on Contact { __typename ...ContactRow customFields deletedAt
    intelligence { __typename sentCount receivedCount firstContactAt lastContactAt lastSentAt lastReceivedAt
      daysSinceContact replyRate avgResponseTimeHours preferredContactHours threadCount communicationPattern health strength }
    activity(first: $activity) { __typename totalCount
      edges { __typename cursor node { __typename id type resourceId occurredAt summary participants metadata
        contact { __typename id fullName } } }
      pageInfo { __typename hasNextPage endCursor } }
    relationships(first: $rels) { __typename totalCount edges { __typename node { __typename id kind weight isActive
      sharedThreadCount lastSeenAt source { __typename id } target { __typename id } other { __typename id ... on Contact { fullName } } } } }
    documents(first: $docs) { __typename totalCount edges { __typename node { __typename id title status version tags
      metadata createdAt author { __typename id fullName }
      versions(first: 1) { __typename edges { __typename node { __typename version title createdAt } } } } } } } } }
""" + ROW,
    "documents": """query Documents($first: Int, $order: [DocumentOrder!], $after: String) {
  documents(first: $first, orderBy: $order, after: $after) { __typename totalCount
    edges { __typename cursor node { __typename id title contentType status version updatedAt deletedAt
      versions(first: 1) { __typename totalCount edges { __typename cursor node { __typename version title contentHash createdAt } } } } }
    pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor } } }""",
    "strongest": """query Strongest($first: Int) {
  contacts(first: $first, orderBy: [{field: STRENGTH, direction: DESC}]) { __typename
    edges { __typename cursor node { __typename id fullName intelligence { __typename strength health lastContactAt } } } } }""",
    "edges": """query Edges($first: Int, $order: [RelationshipOrder!], $filter: RelationshipFilter, $after: String) {
  relationships(first: $first, orderBy: $order, filter: $filter, after: $after) { __typename totalCount
    edges { __typename cursor node { __typename id kind weight createdAt metadata
      source { __typename ... on Contact { id fullName } } target { __typename id } other { __typename id } } }
    pageInfo { __typename hasNextPage endCursor } } }""",
    "record": """query RecordDetail($id: ID!) {
  node(id: $id) { __typename id ... on Record { __typename name displayName fields version createdAt deletedAt
    history(first: 5) { __typename totalCount edges { __typename node { __typename version name fields action changedFields createdAt } } }
    relationships { __typename edges { __typename node { __typename kind other { __typename id } } } }
    documents { __typename totalCount edges { __typename node { __typename id title } } } } } }""",
    "toggles": """query Toggles($withRels: Boolean!, $skipEmail: Boolean!) {
  contacts(first: 5) { edges { node { id email @skip(if: $skipEmail)
    relationships(first: 2) @include(if: $withRels) { edges { node { kind } } } } } } }""",
    "node": "query Node($id: ID!) { node(id: $id) { __typename id ... on Contact { fullName email } } }",
    "records": """query Deals($type: ID, $filter: RecordFilter, $order: [RecordOrder!], $first: Int, $after: String) {
  records(objectTypeId: $type, filter: $filter, orderBy: $order, first: $first, after: $after) { __typename totalCount
    edges { __typename cursor node { __typename id name displayName fields updatedAt
      objectType { __typename id name displayName recordCount source { id } } source { __typename id } } }
    pageInfo { __typename hasNextPage endCursor } } }""",
    "search": """query Search($q: String!, $first: Int, $types: [SearchableType!]) {
  search(query: $q, first: $first, types: $types) { __typename score snippet
    node { __typename id ... on Contact { __typename fullName } ... on Record { name } ... on Document { title } } } }""",
    "people": """query Team($first: Int) {
  members(first: $first) { __typename edges { __typename cursor node { __typename id role status createdAt
    user { __typename id email name createdAt } } } pageInfo { hasNextPage } }
  sources { __typename totalCount edges { node { __typename id name displayName provider status config hasCredentials } } }
  contacts(first: 2) { edges { node { owner { __typename id role } source { __typename id name } } } } }""",
    "several": """query Dashboard($n: Int) { __typename
  people: contacts(first: $n) { edges { node { id fullName } } }
  recent: documents(first: $n) { totalCount edges { node { title } } }
  strongest: relationships(first: $n) { edges { node { kind weight } } } }""",
}


def apollo_corpus(world: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ids, documents = world["ids"], world["documents"]
    return [
        ("list", {"first": 3}), ("list", {"first": 50}),
        ("network", {"first": 50, "rels": 10}), ("network", {"first": 2, "rels": 0}),
        ("detail", {"id": ids[0]}), ("detail", {"id": ids[1], "activity": 1, "rels": 1, "docs": 1}),
        ("detail", {"id": ids[6]}),  # soft-deleted: node() still shows it
        ("detail", {"id": documents[0]}),  # a node of another type: only the shared fields
        ("documents", {}), ("documents", {"first": 2, "order": [{"field": "TITLE", "direction": "ASC"}]}),
        ("strongest", {"first": 50}),
        ("edges", {}), ("edges", {"first": 3, "order": [{"field": "CREATED_AT", "direction": "ASC"}]}),
        ("edges", {"filter": {"kind": {"eq": "knows"}}}),
        ("record", {"id": world["record"]}),
        ("toggles", {"withRels": True, "skipEmail": False}), ("toggles", {"withRels": False, "skipEmail": True}),
        ("node", {"id": ids[2]}), ("node", {"id": documents[1]}),
        ("node", {"id": "Q29udGFjdDowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA="}),  # no such contact
        ("several", {"n": 2}),
        ("records", {}), ("records", {"first": 1}),
        ("records", {"type": world["deal_type"], "filter": {"fields": [{"field": "stage", "eq": "won"}]},
                     "order": [{"customField": "amount", "direction": "DESC"}], "first": 50}),
        ("records", {"type": world["deal_type"], "order": [{"field": "NAME"}]}),
        ("records", {"type": "T2JqZWN0VHlwZTowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA="}),  # no such type: empty
        ("people", {"first": 10}),
        ("search", {"q": "plan"}), ("search", {"q": "two", "first": 2}), ("search", {"q": "deal", "types": ["RECORD"]}),
        ("search", {"q": "nothing-matches-this"}), ("search", {"q": "p0*"}), ("search", {"q": "plan", "first": 0}),
    ]


def fallbacks() -> float:
    return sum(m.value for family in FALLBACKS.collect() for m in family.samples if m.name.endswith("_total"))


async def test_apollo_shaped_queries_of_every_type_are_planned_and_answer_as_the_resolvers(
    api: Api, unplanned: Api, world: dict[str, Any], sql: Any,
) -> None:
    auth = world["who"].auth
    for name, variables in apollo_corpus(world):
        query = APOLLO[name]
        before = fallbacks()
        body = await same(api, unplanned, query, variables, auth)
        assert "errors" not in body, (name, body)
        assert fallbacks() == before, f"{name} {variables} was not planned"
        with sql:
            await api.data(query, variables, **auth)
        assert sql.count == 2, (name, sql.statements)  # the transaction's scope and the plan


async def test_pages_after_cursors_in_nested_and_root_connections(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    auth = world["who"].auth
    first = await same(api, unplanned, APOLLO["documents"], {"first": 1}, auth)
    end = first["data"]["documents"]["pageInfo"]["endCursor"]
    second = await same(api, unplanned, APOLLO["documents"], {"first": 1, "after": end}, auth)
    assert second["data"]["documents"]["edges"][0]["node"]["title"] != first["data"]["documents"]["edges"][0]["node"]["title"]
    edges = await same(api, unplanned, APOLLO["edges"], {"first": 2}, auth)
    more = await same(api, unplanned, APOLLO["edges"], {"first": 2, "after": edges["data"]["relationships"]["pageInfo"]["endCursor"]}, auth)
    assert more["data"]["relationships"]["edges"]


async def test_a_field_outside_the_declarations_falls_back_and_is_counted(
    api: Api, unplanned: Api, world: dict[str, Any],
) -> None:
    auth = world["who"].auth
    query = "query Typed { records(first: 2) { edges { node { id objectType { fieldDefinitions { name } } } } } }"
    reason = "ObjectType.fieldDefinitions: field definitions are normalised in Python"
    before = FALLBACKS.labels(reason)._value.get()
    await same(api, unplanned, query, {}, auth)
    assert FALLBACKS.labels(reason)._value.get() == before + 1
    for query, reason in (("{ viewer { user { id } } }", "Query.viewer"),
                          ("{ contacts { edges { node { relationships(kinds: [\"same_company\"]) { totalCount } } } } }",
                           "computed relationship kinds")):
        before = FALLBACKS.labels(reason)._value.get()
        await same(api, unplanned, query, {}, auth)
        assert FALLBACKS.labels(reason)._value.get() == before + 1


async def test_bad_ids_and_cursors_get_the_resolvers_errors(api: Api, unplanned: Api, world: dict[str, Any]) -> None:
    auth = world["who"].auth
    for name, variables in (("node", {"id": "not an id"}), ("node", {"id": 12}), ("documents", {"after": "nope"}),
                            ("edges", {"first": -1})):
        body = await same(api, unplanned, APOLLO[name], variables, auth)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    good = await api.data(APOLLO["node"], {"id": world["ids"][0]}, **auth)  # the compiled statement still serves
    assert good["node"]["fullName"] == "Ann Éclair"


async def test_root_fields_outside_the_declarations_are_resolved_beside_the_planned_ones(
    api: Api, unplanned: Api, world: dict[str, Any], sql: Any,
) -> None:
    """Apollo batches a page's queries into one operation: the planner answers the fields it
    covers in one statement and the resolvers answer the rest, merged in the document's order."""
    auth = world["who"].auth
    query = """query Page($n: Int) { viewer { __typename user { email } } contacts(first: $n) { __typename
      edges { node { __typename id fullName relationships(first: 3) { edges { node { kind } } } } } }
      workspace { name } documents(first: $n) { edges { node { title } } } }"""
    before = FALLBACKS.labels("Query.viewer")._value.get()
    body = await same(api, unplanned, query, {"n": 5}, auth)
    assert list(body["data"]) == ["viewer", "contacts", "workspace", "documents"]
    assert FALLBACKS.labels("Query.viewer")._value.get() == before + 1
    with sql:
        await api.data(query, {"n": 5}, **auth)
    assert len([s for s in sql.statements if "relationships" in s or "documents" in s]) == 1, sql.statements
    refused = await same(api, unplanned, query, {"n": 500}, auth)  # the resolvers' error, for the planned part too
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_plan_made_for_an_object_types_fields_is_compiled_again_when_they_change(
    api: Api, unplanned: Api, world: dict[str, Any],
) -> None:
    """A custom-field filter is compiled for the type's fields as they were; a changed type is
    noticed by the statement itself, answered by the resolvers once, and compiled afresh."""
    auth = world["who"].auth
    variables = {"type": world["deal_type"], "filter": {"fields": [{"field": "amount", "gt": 5}]}}
    first = await same(api, unplanned, APOLLO["records"], variables, auth)
    assert [e["node"]["name"] for e in first["data"]["records"]["edges"]] == ["Big deal"]
    change = ("mutation($id: ID!, $input: UpdateObjectTypeInput!) { updateObjectType(id: $id, input: $input) { userErrors { message } } }")
    changed = await api.data(change, {"id": world["deal_type"], "input": {"displayName": "Deals!"}}, **auth)
    assert changed["updateObjectType"]["userErrors"] == []
    stale = FALLBACKS.labels("a plan gone stale (the rows it was compiled for changed)")._value.get()
    again = await same(api, unplanned, APOLLO["records"], variables, auth)
    assert again["data"]["records"]["edges"][0]["node"]["objectType"]["displayName"] == "Deals!"
    assert FALLBACKS.labels("a plan gone stale (the rows it was compiled for changed)")._value.get() == stale + 1
    before = fallbacks()
    await same(api, unplanned, APOLLO["records"], variables, auth)
    assert fallbacks() == before
