"""Manual relationships, the contact graph, introduction paths, and the SQL cost of nesting."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.conftest import Account, Api, sign_up
from tests.contacts_support import CREATE_REL, ERRORS, create, relate

BULK = f"""
mutation($inputs: [CreateRelationshipInput!]!) {{
  createRelationships(inputs: $inputs) {{ relationships {{ id kind weight }} {ERRORS} }}
}}
"""
UPDATE_REL = f"""
mutation($id: ID!, $input: UpdateRelationshipInput!) {{
  updateRelationship(id: $id, input: $input) {{ relationship {{ id kind weight isActive metadata }} {ERRORS} }}
}}
"""
DELETE_REL = f"mutation($id: ID!) {{ deleteRelationship(id: $id) {{ deletedId {ERRORS} }} }}"
LIST_REL = """
query($filter: RelationshipFilter, $orderBy: [RelationshipOrder!], $first: Int, $after: String, $last: Int, $before: String) {
  relationships(filter: $filter, orderBy: $orderBy, first: $first, after: $after, last: $last, before: $before) {
    totalCount edges { node { id kind weight } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
GRAPH = """
query($focus: ID, $depth: Int, $minWeight: Float, $kinds: [String!], $limit: Int) {
  relationshipGraph(focus: $focus, depth: $depth, minWeight: $minWeight, kinds: $kinds, limit: $limit) {
    nodes { id fullName } edges { source target kinds weight lastSeenAt }
  }
}
"""
PATH = """
query($from: ID!, $to: ID!, $maxDepth: Int) {
  introductionPath(from: $from, to: $to, maxDepth: $maxDepth) { contacts { fullName } edges { source target weight } strength }
}
"""


def fake(type_name: str) -> str:
    return base64.b64encode(f"{type_name}:{uuid.uuid4()}".encode()).decode()


async def test_create_update_delete(api: Api, alice: Account) -> None:
    a, b = await create(api, alice, fullName="A"), await create(api, alice, fullName="B")
    rel = await relate(api, alice, a["id"], b["id"], "works_with", weight=0.8, metadata={"since": 2020})
    assert (rel["kind"], rel["weight"], rel["metadata"], rel["source"]["id"], rel["target"]["id"]) == (
        "works_with", 0.8, {"since": 2020}, a["id"], b["id"])
    default = await relate(api, alice, b["id"], a["id"], "reports_to")
    assert default["weight"] == 0.5
    updated = (await api.data(UPDATE_REL, {"id": rel["id"], "input": {"weight": 0.3, "isActive": False, "kind": "knows"}},
                              **alice.auth))["updateRelationship"]
    assert updated["userErrors"] == [] and updated["relationship"] == {**updated["relationship"], "weight": 0.3,
                                                                      "isActive": False, "kind": "knows"}
    clash = (await api.data(UPDATE_REL, {"id": default["id"], "input": {"kind": "knows"}}, **alice.auth))["updateRelationship"]
    assert clash["userErrors"] == []  # b->a knows differs from a->b knows: edges are directed
    bad = (await api.data(UPDATE_REL, {"id": rel["id"], "input": {"weight": 2}}, **alice.auth))["updateRelationship"]
    assert bad["userErrors"][0]["field"] == ["input", "weight"]
    view = await api.data("""query($id: ID!) { node(id: $id) { ... on Contact {
        out: relationships(direction: OUTGOING) { edges { node { kind } } }
        inc: relationships(direction: INCOMING) { edges { node { kind } } }
        both: relationships { totalCount } } } }""", {"id": a["id"]}, **alice.auth)
    assert view["node"]["out"]["edges"] == [{"node": {"kind": "knows"}}]
    assert view["node"]["inc"]["edges"] == [{"node": {"kind": "knows"}}]
    assert view["node"]["both"]["totalCount"] == 2
    deleted = (await api.data(DELETE_REL, {"id": rel["id"]}, **alice.auth))["deleteRelationship"]
    assert deleted["deletedId"] == rel["id"]
    again = (await api.data(DELETE_REL, {"id": rel["id"]}, **alice.auth))["deleteRelationship"]
    assert again["userErrors"][0]["code"] == "NOT_FOUND"


async def test_refusals_and_bulk_all_or_nothing(api: Api, alice: Account, bob: Account) -> None:
    a, b = await create(api, alice, fullName="A"), await create(api, alice, fullName="B")
    theirs = await create(api, bob, fullName="Theirs")
    await relate(api, alice, a["id"], b["id"], "works_with")
    cases = [
        ({"targetId": theirs["id"]}, ["input", "targetId"], "NOT_FOUND"),
        ({"targetId": fake("Contact")}, ["input", "targetId"], "NOT_FOUND"),
        ({"targetId": fake("Nothing")}, ["input", "targetId"], "NOT_FOUND"),
        ({"targetId": a["id"]}, ["input", "targetId"], "INVALID"),
        ({"kind": "Works With"}, ["input", "kind"], "INVALID"),
        ({"kind": "shared_thread"}, ["input", "kind"], "INVALID"),
        ({"weight": 1.5}, ["input", "weight"], "INVALID"),
        ({"kind": "works_with"}, ["input", "kind"], "DUPLICATE"),
    ]
    for fields, path, code in cases:
        inp = {"sourceId": a["id"], "targetId": b["id"], "kind": "knows", **fields}
        payload = (await api.data(CREATE_REL, {"input": inp}, **alice.auth))["createRelationship"]
        assert payload["relationship"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(path, code)], fields
    c = await create(api, alice, fullName="C")
    bulk = (await api.data(BULK, {"inputs": [
        {"sourceId": a["id"], "targetId": c["id"], "kind": "knows"},
        {"sourceId": b["id"], "targetId": theirs["id"], "kind": "knows"},
        {"sourceId": b["id"], "targetId": c["id"], "kind": "knows", "weight": -1},
    ]}, **alice.auth))["createRelationships"]
    assert bulk["relationships"] == []
    assert sorted((e["field"], e["code"]) for e in bulk["userErrors"]) == [
        (["inputs", "1", "targetId"], "NOT_FOUND"), (["inputs", "2", "weight"], "INVALID")]
    assert (await api.data(LIST_REL, {}, **alice.auth))["relationships"]["totalCount"] == 1  # nothing written
    ok = (await api.data(BULK, {"inputs": [
        {"sourceId": a["id"], "targetId": c["id"], "kind": "knows"},
        {"sourceId": b["id"], "targetId": c["id"], "kind": "knows", "weight": 0.9},
    ]}, **alice.auth))["createRelationships"]
    assert ok["userErrors"] == [] and [r["weight"] for r in ok["relationships"]] == [0.5, 0.9]


async def test_relationships_query_filters_orders_and_isolation(api: Api, alice: Account, bob: Account) -> None:
    a, b, c = [await create(api, alice, fullName=n) for n in "ABC"]
    r1 = await relate(api, alice, a["id"], b["id"], "knows", weight=0.2)
    r2 = await relate(api, alice, b["id"], c["id"], "works_with", weight=0.9)
    r3 = await relate(api, alice, c["id"], a["id"], "knows", weight=0.6)
    theirs = await create(api, bob, fullName="X")
    theirs2 = await create(api, bob, fullName="Y")
    foreign = await relate(api, bob, theirs["id"], theirs2["id"], "knows")

    async def ids(**variables: Any) -> list[str]:
        return [e["node"]["id"] for e in (await api.data(LIST_REL, variables, **alice.auth))["relationships"]["edges"]]

    assert await ids() == [r2["id"], r3["id"], r1["id"]]  # strongest first
    assert await ids(orderBy=[{"field": "WEIGHT", "direction": "ASC"}]) == [r1["id"], r3["id"], r2["id"]]
    assert await ids(orderBy=[{"field": "CREATED_AT", "direction": "ASC"}]) == [r1["id"], r2["id"], r3["id"]]
    assert await ids(filter={"kind": {"eq": "knows"}}, orderBy=[{"field": "CREATED_AT", "direction": "ASC"}]) == [r1["id"], r3["id"]]
    assert await ids(filter={"nodeId": {"eq": a["id"]}}) == [r3["id"], r1["id"]]
    assert await ids(filter={"weight": {"gte": 0.5}}) == [r2["id"], r3["id"]]
    assert await ids(filter={"isActive": False}) == []
    assert await ids(filter={"lastSeenAt": {"isNull": True}}) == [r2["id"], r3["id"], r1["id"]]
    assert await ids(filter={"nodeId": {"eq": theirs["id"]}}) == []
    page = (await api.data(LIST_REL, {"first": 2}, **alice.auth))["relationships"]
    rest = await ids(first=2, after=page["pageInfo"]["endCursor"])
    back = await ids(last=2, before=page["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in page["edges"]] + rest == [r2["id"], r3["id"], r1["id"]]
    assert back == [r2["id"]]
    assert (await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": foreign["id"]}, **alice.auth))["node"] is None
    upd = (await api.data(UPDATE_REL, {"id": foreign["id"], "input": {"weight": 0.1}}, **alice.auth))["updateRelationship"]
    assert upd["userErrors"][0]["code"] == "NOT_FOUND"
    dele = (await api.data(DELETE_REL, {"id": foreign["id"]}, **alice.auth))["deleteRelationship"]
    assert dele["userErrors"][0]["code"] == "NOT_FOUND"
    read_key = (await api.data('mutation { createApiKey(input: {name: "r", scopes: ["contacts:read"]}) { secret } }',
                               **alice.auth))["createApiKey"]["secret"]
    assert len((await api.data(LIST_REL, {}, api_key=read_key))["relationships"]["edges"]) == 3
    body = await api(CREATE_REL, {"input": {"sourceId": a["id"], "targetId": b["id"], "kind": "x"}}, api_key=read_key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def small_graph(api: Api, who: Account) -> dict[str, dict[str, Any]]:
    """A-B 0.9, B-D 0.9, A-C 0.5, C-D 1.0, A-D 0.3; E alone. Best A..D: A-B-D (0.81)."""
    c = {n: await create(api, who, fullName=n, company="Same" if n in "AE" else None) for n in "ABCDE"}
    for s, t, w in (("A", "B", 0.9), ("B", "D", 0.9), ("A", "C", 0.5), ("D", "C", 1.0), ("A", "D", 0.3)):
        await relate(api, who, c[s]["id"], c[t]["id"], "knows", weight=w)
    return c


async def test_introduction_path(api: Api, alice: Account, bob: Account) -> None:
    c = await small_graph(api, alice)

    async def path(a: str, b: str, depth: int | None = None) -> Any:
        return (await api.data(PATH, {"from": c[a]["id"], "to": c[b]["id"], "maxDepth": depth}, **alice.auth))["introductionPath"]

    best = await path("A", "D")
    assert [x["fullName"] for x in best["contacts"]] == ["A", "B", "D"] and best["strength"] == 0.81
    assert [e["weight"] for e in best["edges"]] == [0.9, 0.9]
    direct = await path("A", "D", 1)
    assert [x["fullName"] for x in direct["contacts"]] == ["A", "D"] and direct["strength"] == 0.3
    via = await path("B", "C", 2)
    assert [x["fullName"] for x in via["contacts"]] == ["B", "D", "C"] and via["strength"] == 0.9
    assert await path("A", "E") is None
    assert (await path("A", "A"))["strength"] == 1.0
    theirs = await create(api, bob, fullName="Z")
    assert (await api.data(PATH, {"from": c["A"]["id"], "to": theirs["id"]}, **alice.auth))["introductionPath"] is None


async def test_relationship_graph(api: Api, alice: Account) -> None:
    c = await small_graph(api, alice)
    by_id = {v["id"]: k for k, v in c.items()}

    async def graph(**variables: Any) -> tuple[list[str], list[tuple[str, str, float]]]:
        g = (await api.data(GRAPH, variables, **alice.auth))["relationshipGraph"]
        edges = sorted((*sorted((by_id[e["source"]], by_id[e["target"]])), e["weight"]) for e in g["edges"])
        return sorted(by_id[n["id"]] for n in g["nodes"]), edges  # type: ignore[misc]

    nodes, edges = await graph(focus=c["A"]["id"], depth=1)
    assert nodes == ["A", "B", "C", "D"]
    assert edges == [("A", "B", 0.9), ("A", "C", 0.5), ("A", "D", 0.3), ("B", "D", 0.9), ("C", "D", 1.0)]
    nodes, edges = await graph(focus=c["A"]["id"], depth=1, minWeight=0.4)
    assert nodes == ["A", "B", "C"] and edges == [("A", "B", 0.9), ("A", "C", 0.5)]
    nodes, edges = await graph(focus=c["A"]["id"], depth=2, minWeight=0.4)
    assert nodes == ["A", "B", "C", "D"] and ("A", "D", 0.3) not in edges and ("C", "D", 1.0) in edges
    nodes, _ = await graph(focus=c["B"]["id"], depth=0)
    assert nodes == ["B"]
    nodes, _ = await graph(focus=c["A"]["id"], depth=2, limit=2)
    assert len(nodes) == 2 and "A" in nodes
    nodes, edges = await graph()
    assert nodes == ["A", "B", "C", "D", "E"] and len(edges) == 5
    nodes, edges = await graph(kinds=["same_company"])
    assert edges == [("A", "E", 0.0)]
    nodes, edges = await graph(focus=fake("Contact"))
    assert nodes == [] and edges == []


NESTED = """
{ contacts(first: 100) { totalCount edges { node {
    fullName
    intelligence { strength health }
    activity(first: 3) { totalCount edges { node { type contact { fullName } } } }
    relationships(first: 10) { totalCount edges { node {
      kind weight source { id } target { ... on Contact { fullName } } other { id ... on Contact { email } }
    } } }
} } } }
"""


async def seed(api: Api, n: int) -> Account:
    who = await sign_up(api, workspace=f"N{n}")
    people = [await create(api, who, fullName=f"P{i}", email=f"p{i}@corp.com") for i in range(n)]
    inputs = [{"sourceId": people[i]["id"], "targetId": people[(i + k) % n]["id"], "kind": "knows"}
              for i in range(n) for k in (1, 2)]
    assert (await api.data(BULK, {"inputs": inputs}, **who.auth))["createRelationships"]["userErrors"] == []
    for i in range(0, n, 2):
        await api.data("mutation($i: RecordActivityInput!) { recordActivity(input: $i) { userErrors { code } } }",
                       {"i": {"contactId": people[i]["id"], "type": "message.sent", "resourceId": "m",
                              "occurredAt": "2026-01-01T00:00:00Z"}}, **who.auth)
    return who


async def test_nested_query_costs_the_same_sql_for_5_and_50_contacts(api: Api, sql: Any) -> None:
    counts = []
    for n in (5, 50):
        who = await seed(api, n)
        with sql:
            data = await api.data(NESTED, **who.auth)
        assert data["contacts"]["totalCount"] == n
        first = data["contacts"]["edges"][0]["node"]
        assert first["relationships"]["totalCount"] == 4 and len(first["relationships"]["edges"]) == 4
        counts.append(sql.count)
    assert counts[0] == counts[1], counts
