"""Object types and records through the GraphQL API: validation, merge patches, versions,
schema evolution, typed filters and ordering, isolation and scopes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Account, Api

ERRORS = "userErrors { field message code }"
RECORD = "id name displayName fields version deletedAt"

CREATE_TYPE = f"""
mutation($input: CreateObjectTypeInput!) {{
  createObjectType(input: $input) {{
    objectType {{ id name displayName recordCount fieldDefinitions {{ name fieldType label required options }} }}
    {ERRORS}
  }}
}}"""
UPDATE_TYPE = f"""
mutation($id: ID!, $input: UpdateObjectTypeInput!) {{
  updateObjectType(id: $id, input: $input) {{ objectType {{ id fieldDefinitions {{ name fieldType required options }} }} {ERRORS} }}
}}"""
CREATE = f"mutation($input: CreateRecordInput!) {{ createRecord(input: $input) {{ record {{ {RECORD} }} {ERRORS} }} }}"
UPDATE = f"mutation($id: ID!, $input: UpdateRecordInput!) {{ updateRecord(id: $id, input: $input) {{ record {{ {RECORD} }} {ERRORS} }} }}"
RECORDS = """
query($type: ID, $filter: RecordFilter, $orderBy: [RecordOrder!], $first: Int, $after: String, $search: String) {
  records(objectTypeId: $type, filter: $filter, orderBy: $orderBy, first: $first, after: $after, search: $search) {
    edges { node { id name fields } } pageInfo { hasNextPage endCursor } totalCount
  }
}"""

TICKET_FIELDS = [
    {"name": "title", "fieldType": "STRING", "required": True},
    {"name": "body", "fieldType": "TEXT"},
    {"name": "priority", "fieldType": "INT", "label": "Priority"},
    {"name": "score", "fieldType": "FLOAT"},
    {"name": "urgent", "fieldType": "BOOLEAN"},
    {"name": "due", "fieldType": "DATE"},
    {"name": "opened_at", "fieldType": "DATETIME"},
    {"name": "email", "fieldType": "EMAIL"},
    {"name": "link", "fieldType": "URL"},
    {"name": "status", "fieldType": "SELECT", "options": ["open", "closed"]},
    {"name": "labels", "fieldType": "MULTI_SELECT", "options": ["bug", "ui", "api"]},
    {"name": "extra", "fieldType": "JSON"},
    {"name": "ref", "fieldType": "REFERENCE"},
]


async def make_type(api: Api, who: Account, name: str = "ticket", fields: list[dict[str, Any]] | None = None) -> str:
    data = await api.data(CREATE_TYPE, {"input": {"name": name, "displayName": name.title(),
                                                  "fieldDefinitions": fields or TICKET_FIELDS}}, **who.auth)
    assert data["createObjectType"]["userErrors"] == []
    return data["createObjectType"]["objectType"]["id"]


async def create(api: Api, who: Account, type_id: str, fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    data = await api.data(CREATE, {"input": {"objectTypeId": type_id, "name": name, "fields": fields, **extra}}, **who.auth)
    return data["createRecord"]


async def make(api: Api, who: Account, type_id: str, fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    out = await create(api, who, type_id, fields, name)
    assert out["userErrors"] == [], out
    return out["record"]


@pytest.fixture
async def ticket(api: Api, alice: Account) -> str:
    return await make_type(api, alice)


async def test_object_type_lifecycle(api: Api, alice: Account, ticket: str) -> None:
    data = await api.data('{ objectType(name: "ticket") { id recordCount fieldDefinitions { name fieldType label required options } } objectTypes { totalCount edges { node { name } } } }', **alice.auth)
    assert data["objectType"]["id"] == ticket
    defs = {d["name"]: d for d in data["objectType"]["fieldDefinitions"]}
    assert defs["priority"] == {"name": "priority", "fieldType": "INT", "label": "Priority", "required": False, "options": None}
    assert defs["status"]["options"] == ["open", "closed"]
    assert data["objectTypes"]["totalCount"] == 1
    # unique names, identifier-like field names, options only where they belong
    again = await api.data(CREATE_TYPE, {"input": {"name": "ticket", "displayName": "T", "fieldDefinitions": []}}, **alice.auth)
    assert again["createObjectType"]["userErrors"][0]["code"] == "CONFLICT"
    bad = await api.data(CREATE_TYPE, {"input": {"name": "Bad Name", "displayName": "B", "fieldDefinitions": [
        {"name": "Not Ok", "fieldType": "STRING"}, {"name": "a", "fieldType": "INT"}, {"name": "a", "fieldType": "INT"},
        {"name": "s", "fieldType": "SELECT"}, {"name": "t", "fieldType": "STRING", "options": ["x"]}]}}, **alice.auth)
    fields = {tuple(e["field"]): e["code"] for e in bad["createObjectType"]["userErrors"]}
    assert fields == {("input", "name"): "INVALID", ("input", "fieldDefinitions", "0", "name"): "INVALID",
                      ("input", "fieldDefinitions", "2", "name"): "DUPLICATE",
                      ("input", "fieldDefinitions", "3", "options"): "REQUIRED",
                      ("input", "fieldDefinitions", "4", "options"): "INVALID"}
    # delete is refused while records exist (deleted ones too), allowed after
    record = await make(api, alice, ticket, {"title": "x"})
    refused = await api.data('mutation($id: ID!) { deleteObjectType(id: $id) { deletedId userErrors { message code } } }', {"id": ticket}, **alice.auth)
    assert refused["deleteObjectType"]["userErrors"][0]["code"] == "CONFLICT"
    assert "1 record" in refused["deleteObjectType"]["userErrors"][0]["message"]
    other = await make_type(api, alice, "empty", [])
    done = await api.data('mutation($id: ID!) { deleteObjectType(id: $id) { deletedId userErrors { code } } }', {"id": other}, **alice.auth)
    assert done["deleteObjectType"] == {"deletedId": other, "userErrors": []}
    assert record["version"] == 1


GOOD = {
    "title": "Printer on fire", "body": "Long text " * 50, "priority": 3, "score": 2.5, "urgent": True, "due": "2026-05-06",
    "opened_at": "2026-05-06T16:23:00+02:00", "email": "Ops@Example.com", "link": "https://example.com/t/1",
    "status": "open", "labels": ["bug", "ui", "bug"], "extra": {"a": [1, 2]},
}
BAD = {
    "title": 5, "priority": 2.5, "score": "high", "urgent": "yes", "due": "2026-05-06T10:00:00Z", "opened_at": "2026-05-06",
    "email": "not-an-email", "link": "ftp://example.com", "status": "pending", "labels": ["bug", "nope"], "ref": "bm9wZQ==",
}


async def test_every_field_type_validates_both_ways(api: Api, alice: Account, ticket: str) -> None:
    record = await make(api, alice, ticket, GOOD)
    fields = record["fields"]
    assert fields["opened_at"] == "2026-05-06T14:23:00Z"  # normalised to UTC
    assert fields["email"] == "ops@example.com"
    assert fields["labels"] == ["bug", "ui"]
    assert fields["priority"] == 3 and fields["score"] == 2.5 and fields["extra"] == {"a": [1, 2]}
    ref = await make(api, alice, ticket, {"title": "refers", "ref": record["id"], "priority": 4.0})
    assert ref["fields"]["ref"] == record["id"] and ref["fields"]["priority"] == 4

    out = await create(api, alice, ticket, BAD)
    assert out["record"] is None
    errors = {e["field"][-1]: e for e in out["userErrors"]}
    assert set(errors) == set(BAD)
    assert all(e["code"] == "INVALID" and e["field"][:2] == ["input", "fields"] for e in errors.values())
    assert "Priority" in errors["priority"]["message"]
    # a reference to a deleted node, or to another workspace's, is refused
    await api.data("mutation($id: ID!) { deleteRecord(id: $id) { record { id } } }", {"id": record["id"]}, **alice.auth)
    out = await create(api, alice, ticket, {"title": "x", "ref": record["id"]})
    assert out["userErrors"][0]["field"] == ["input", "fields", "ref"]
    missing = await create(api, alice, ticket, {"priority": 1, "unknown": 1})
    codes = {e["field"][-1]: e["code"] for e in missing["userErrors"]}
    assert codes == {"title": "REQUIRED", "unknown": "INVALID"}
    blank = await create(api, alice, ticket, {"title": "x"}, name=" ")
    assert blank["userErrors"][0]["field"] == ["input", "name"]
    count = await api.data('{ objectType(name: "ticket") { recordCount } }', **alice.auth)
    assert count["objectType"]["recordCount"] == 1


async def test_merge_patch_versions_history_and_revert(api: Api, alice: Account, ticket: str) -> None:
    record = await make(api, alice, ticket, {"title": "One", "priority": 1, "extra": {"a": 1, "b": 2}, "labels": ["bug"]})
    rid = record["id"]
    out = (await api.data(UPDATE, {"id": rid, "input": {"fields": {"priority": 2, "labels": None, "extra": {"b": None, "c": 3}}}}, **alice.auth))["updateRecord"]
    assert out["userErrors"] == []
    assert out["record"]["fields"] == {"title": "One", "priority": 2, "extra": {"a": 1, "c": 3}}
    assert out["record"]["version"] == 2
    # deleting a required field is refused, nothing written
    refused = (await api.data(UPDATE, {"id": rid, "input": {"fields": {"title": None, "priority": 9}}}, **alice.auth))["updateRecord"]
    assert refused["userErrors"] == [{"field": ["input", "fields", "title"], "message": "title is required and cannot be deleted", "code": "REQUIRED"}]
    # no change, no version
    same = (await api.data(UPDATE, {"id": rid, "input": {"fields": {"priority": 2}}}, **alice.auth))["updateRecord"]
    assert same["record"]["version"] == 2
    renamed = (await api.data(UPDATE, {"id": rid, "input": {"name": "Renamed", "displayName": "Shown"}}, **alice.auth))["updateRecord"]
    assert renamed["record"]["version"] == 3 and renamed["record"]["displayName"] == "Shown"

    history = await api.data("""query($id: ID!) { node(id: $id) { ... on Record { version history { totalCount edges { node {
        version name fields action changedFields changedBy { user { email } } } } } } } }""", {"id": rid}, **alice.auth)
    versions = [e["node"] for e in history["node"]["history"]["edges"]]
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[1]["changedFields"] == ["extra", "labels", "priority"]
    assert versions[2]["action"] == "created" and versions[0]["name"] == "Renamed"
    assert versions[0]["changedBy"]["user"]["email"] == alice.email

    reverted = (await api.data("mutation($id: ID!) { revertRecord(id: $id, version: 1) { record { name fields version } userErrors { field code } } }", {"id": rid}, **alice.auth))["revertRecord"]
    assert reverted["record"] == {"name": "R", "fields": {"title": "One", "priority": 1, "extra": {"a": 1, "b": 2}, "labels": ["bug"]}, "version": 4}
    missing = (await api.data("mutation($id: ID!) { revertRecord(id: $id, version: 99) { record { id } userErrors { field code } } }", {"id": rid}, **alice.auth))["revertRecord"]
    assert missing["userErrors"] == [{"field": ["version"], "code": "NOT_FOUND"}]


async def test_soft_delete_restore_and_remote_ids(api: Api, alice: Account, ticket: str) -> None:
    src = await api.data('mutation { createSource(input: {name: "crm", displayName: "CRM", provider: API}) { source { id } } }', **alice.auth)
    source = src["createSource"]["source"]["id"]
    record = await create(api, alice, ticket, {"title": "a"}, sourceId=source, remoteId="T-1")
    rid = record["record"]["id"]
    dup = await create(api, alice, ticket, {"title": "b"}, sourceId=source, remoteId="T-1")
    assert dup["userErrors"][0]["code"] == "CONFLICT" and dup["userErrors"][0]["field"] == ["input", "remoteId"]
    deleted = await api.data("mutation($id: ID!) { deleteRecord(id: $id) { record { deletedAt } userErrors { code } } }", {"id": rid}, **alice.auth)
    assert deleted["deleteRecord"]["record"]["deletedAt"]
    listed = await api.data(RECORDS, {"type": ticket}, **alice.auth)
    assert listed["records"]["totalCount"] == 0
    listed = await api.data(RECORDS, {"type": ticket, "filter": {"includeDeleted": True}}, **alice.auth)
    assert listed["records"]["totalCount"] == 1
    again = await api.data("mutation($id: ID!) { deleteRecord(id: $id) { record { id } userErrors { code } } }", {"id": rid}, **alice.auth)
    assert again["deleteRecord"]["userErrors"][0]["code"] == "NOT_FOUND"
    updated = await api.data(UPDATE, {"id": rid, "input": {"name": "x"}}, **alice.auth)
    assert updated["updateRecord"]["userErrors"][0]["code"] == "NOT_FOUND"
    restored = await api.data("mutation($id: ID!) { restoreRecord(id: $id) { record { deletedAt source { name } remoteId } } }", {"id": rid}, **alice.auth)
    assert restored["restoreRecord"]["record"] == {"deletedAt": None, "source": {"name": "crm"}, "remoteId": "T-1"}


async def test_schema_evolution_refusals(api: Api, alice: Account) -> None:
    fields = [{"name": "title", "fieldType": "STRING"}, {"name": "size", "fieldType": "STRING"},
              {"name": "state", "fieldType": "SELECT", "options": ["a", "b", "c"]}]
    type_id = await make_type(api, alice, "lead", fields)
    await make(api, alice, type_id, {"title": "t", "size": "12", "state": "a"})
    await make(api, alice, type_id, {"size": "big", "state": "b"})

    async def evolve(defs: list[dict[str, Any]]) -> dict[str, Any]:
        return (await api.data(UPDATE_TYPE, {"id": type_id, "input": {"fieldDefinitions": defs}}, **alice.auth))["updateObjectType"]

    out = await evolve([{**fields[0], "required": True}, *fields[1:]])
    assert out["userErrors"] == [{"field": ["input", "fieldDefinitions", "0", "required"], "code": "CONFLICT",
                                  "message": "1 record(s) have no value for 'title', which cannot become required"}]
    out = await evolve([fields[0], {"name": "size", "fieldType": "INT"}, fields[2]])
    assert out["userErrors"][0]["field"] == ["input", "fieldDefinitions", "1", "fieldType"]
    assert out["userErrors"][0]["message"].startswith("2 record(s)")  # "12" is a string, not an INT
    out = await evolve([*fields[:2], {"name": "state", "fieldType": "SELECT", "options": ["a", "c"]}])
    assert out["userErrors"][0]["field"] == ["input", "fieldDefinitions", "2", "options"]
    # allowed: an unused option goes, a new field comes, a field is removed (its values with it)
    out = await evolve([fields[0], {"name": "state", "fieldType": "SELECT", "options": ["a", "b"]},
                        {"name": "amount", "fieldType": "FLOAT"}])
    assert out["userErrors"] == []
    listed = await api.data(RECORDS, {"type": type_id, "orderBy": [{"customField": "amount"}, {"field": "CREATED_AT"}]}, **alice.auth)
    assert [e["node"]["fields"] for e in listed["records"]["edges"]] == [{"title": "t", "state": "a"}, {"state": "b"}]
    # new records follow the new schema
    refused = await create(api, alice, type_id, {"size": "x"})
    assert refused["userErrors"][0]["field"] == ["input", "fields", "size"]


async def test_typed_filters_and_ordering(api: Api, alice: Account, ticket: str) -> None:
    rows = [("a", 10, "2026-01-02T00:00:00Z", "open", ["bug"]), ("b", 9, "2026-01-01T00:00:00Z", "closed", ["ui"]),
            ("c", 100, "2025-12-31T23:00:00-02:00", "open", ["bug", "api"]), ("d", None, None, None, [])]
    for name, prio, opened, status, labels in rows:
        fields = {"title": name, "labels": labels, "priority": prio, "opened_at": opened, "status": status}
        await make(api, alice, ticket, {k: v for k, v in fields.items() if v is not None}, name=name)

    async def names(filter: dict[str, Any] | None = None, order: list[dict[str, Any]] | None = None) -> list[str]:
        data = await api.data(RECORDS, {"type": ticket, "filter": filter, "orderBy": order}, **alice.auth)
        return [e["node"]["name"] for e in data["records"]["edges"]]

    # numbers compare as numbers (9 < 10 < 100), not as strings
    assert await names({"fields": [{"field": "priority", "gt": 9}]}, [{"customField": "priority"}]) == ["a", "c"]
    assert await names({"fields": [{"field": "priority", "lte": 10}]}, [{"customField": "priority", "direction": "DESC"}]) == ["a", "b"]
    # absent values sort last ascending, first descending
    assert await names(order=[{"customField": "priority"}]) == ["b", "a", "c", "d"]
    assert await names(order=[{"customField": "priority", "direction": "DESC"}]) == ["d", "c", "a", "b"]
    # datetimes compare as instants: 2025-12-31T23:00-02:00 is 2026-01-01T01:00Z
    assert await names(order=[{"customField": "opened_at"}]) == ["b", "c", "a", "d"]
    assert await names({"fields": [{"field": "opened_at", "gte": "2026-01-01T00:30:00Z"}]}, [{"customField": "opened_at"}]) == ["c", "a"]
    assert await names({"fields": [{"field": "opened_at", "isNull": True}]}) == ["d"]
    assert await names({"fields": [{"field": "priority", "isNull": False}, {"field": "status", "eq": "open"}]}) == ["a", "c"]
    assert await names({"fields": [{"field": "status", "neq": "open"}]}) == ["b", "d"]
    assert await names({"fields": [{"field": "status", "in": ["closed", "open"]}]}, [{"field": "NAME", "direction": "DESC"}]) == ["c", "b", "a"]
    assert await names({"fields": [{"field": "labels", "contains": "bug"}]}) == ["a", "c"]
    assert await names({"fields": [{"field": "title", "contains": "B"}]}) == ["b"]
    assert await names({"or": [{"fields": [{"field": "priority", "eq": 9}]}, {"name": {"eq": "d"}}]}) == ["b", "d"]
    assert await names({"not": {"fields": [{"field": "priority", "lt": 50}]}}) == ["c", "d"]
    # keyset pages over a custom ordering
    first = await api.data(RECORDS, {"type": ticket, "orderBy": [{"customField": "priority"}], "first": 2}, **alice.auth)
    page = first["records"]
    assert [e["node"]["name"] for e in page["edges"]] == ["b", "a"] and page["pageInfo"]["hasNextPage"]
    rest = await api.data(RECORDS, {"type": ticket, "orderBy": [{"customField": "priority"}], "first": 2, "after": page["pageInfo"]["endCursor"]}, **alice.auth)
    assert [e["node"]["name"] for e in rest["records"]["edges"]] == ["c", "d"]
    # bad filters are the caller's mistake
    for bad in ({"fields": [{"field": "priority", "gt": "ten"}]}, {"fields": [{"field": "nope", "eq": 1}]},
                {"fields": [{"field": "extra", "gt": 1}]}):
        body = await api(RECORDS, {"type": ticket, "filter": bad}, **alice.auth)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    body = await api(RECORDS, {"filter": {"fields": [{"field": "priority", "eq": 1}]}}, **alice.auth)
    assert "objectTypeId" in body["errors"][0]["message"]


async def test_record_search(api: Api, alice: Account, ticket: str) -> None:
    await make(api, alice, ticket, {"title": "Printer jams", "body": "The office printer jams on every page"}, name="jam")
    await make(api, alice, ticket, {"title": "Login fails", "body": "Password reset emails never arrive"}, name="login")
    data = await api.data(RECORDS, {"type": ticket, "search": "printers jamming"}, **alice.auth)
    assert [e["node"]["name"] for e in data["records"]["edges"]] == ["jam"]
    data = await api.data(RECORDS, {"search": "pass*"}, **alice.auth)
    assert [e["node"]["name"] for e in data["records"]["edges"]] == ["login"]


async def test_isolation(api: Api, alice: Account, bob: Account, ticket: str) -> None:
    record = await make(api, alice, ticket, {"title": "secret"})
    # bob sees nothing of alice's, and his mutations on her ids are NOT_FOUND
    data = await api.data('query($t: ID!, $r: ID!) { a: node(id: $t) { id } b: node(id: $r) { id } objectType(name: "ticket") { id } records { totalCount } }',
                          {"t": ticket, "r": record["id"]}, **bob.auth)
    assert data == {"a": None, "b": None, "objectType": None, "records": {"totalCount": 0}}
    data = await api.data(RECORDS, {"type": ticket}, **bob.auth)
    assert data["records"]["totalCount"] == 0
    out = await create(api, bob, ticket, {"title": "x"})
    assert out["userErrors"] == [{"field": ["input", "objectTypeId"], "message": "Object type not found", "code": "NOT_FOUND"}]
    for query, variables in (
        (UPDATE, {"id": record["id"], "input": {"name": "pwned"}}),
        ("mutation($id: ID!) { deleteRecord(id: $id) { userErrors { code } } }", {"id": record["id"]}),
        ("mutation($id: ID!) { revertRecord(id: $id, version: 1) { userErrors { code } } }", {"id": record["id"]}),
        ("mutation($id: ID!) { deleteObjectType(id: $id) { userErrors { code } } }", {"id": ticket}),
        (UPDATE_TYPE, {"id": ticket, "input": {"displayName": "pwned"}}),
    ):
        body = await api.data(query, variables, **bob.auth)
        assert next(iter(body.values()))["userErrors"][0]["code"] == "NOT_FOUND"
    bobs = await make_type(api, bob)
    ref = await create(api, bob, bobs, {"title": "x", "ref": record["id"]})
    assert ref["userErrors"][0]["field"] == ["input", "fields", "ref"]
    mine = await api.data("query($id: ID!) { node(id: $id) { ... on Record { name version } } }", {"id": record["id"]}, **alice.auth)
    assert mine["node"] == {"name": "R", "version": 1}


async def test_scopes(api: Api, alice: Account, ticket: str) -> None:
    async def key(scopes: list[str]) -> str:
        data = await api.data("mutation($s: [String!]!) { createApiKey(input: {name: \"k\", scopes: $s}) { secret } }", {"s": scopes}, **alice.auth)
        return data["createApiKey"]["secret"]

    reader, other = await key(["records:read"]), await key(["contacts:read", "contacts:write"])
    data = await api.data(RECORDS, {"type": ticket}, api_key=reader)
    assert data["records"]["totalCount"] == 0
    body = await api(CREATE, {"input": {"objectTypeId": ticket, "name": "x", "fields": {"title": "x"}}}, api_key=reader)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api(RECORDS, {"type": ticket}, api_key=other)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api('{ objectTypes { totalCount } }', api_key=other)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
