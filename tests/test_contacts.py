"""Contacts through the API: writes, validation, dedup, filters, ordering, paging, merge, isolation."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

from app.services import contacts as contact_service
from app.services.access import Principal
from tests.conftest import Account, Api
from tests.contacts_support import CREATE, DELETE, LIST, MERGE, RESTORE, UPDATE, create, names, record, relate

CREATE_KEY = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret userErrors { code } } }"


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_create_normalises_and_reads_back(api: Api, alice: Account) -> None:
    c = await create(api, alice, fullName="  Ada Lovelace ", email=" ADA@Example.COM ", emails=["Ada2@example.com"],
                     company="Analytical", tags=["vip", "vip", "math"], customFields={"score": 3})
    assert c["fullName"] == "Ada Lovelace"
    assert c["email"] == "ada@example.com"
    assert c["emails"] == ["ada2@example.com"]
    assert c["tags"] == ["vip", "math"]
    assert c["customFields"] == {"score": 3}
    node = await api.data("query($id: ID!) { node(id: $id) { ... on Contact { fullName email } } }", {"id": c["id"]}, **alice.auth)
    assert node["node"] == {"fullName": "Ada Lovelace", "email": "ada@example.com"}


async def test_invalid_input_writes_nothing(api: Api, alice: Account, bob: Account) -> None:
    foreign_source = (await api.data(
        'mutation { createSource(input: {name: "crm", displayName: "CRM", provider: API}) { source { id } } }', **bob.auth
    ))["createSource"]["source"]["id"]
    cases = [
        ({"fullName": "  "}, ["input", "fullName"], "REQUIRED"),
        ({"fullName": "A", "email": "not-an-email"}, ["input", "email"], "INVALID"),
        ({"fullName": "A", "emails": ["x@y.com", "bad"]}, ["input", "emails", "1"], "INVALID"),
        ({"fullName": "A", "ownerId": base64.b64encode(f"Member:{uuid.uuid4()}".encode()).decode()}, ["input", "ownerId"], "NOT_FOUND"),
        ({"fullName": "A", "sourceId": foreign_source}, ["input", "sourceId"], "NOT_FOUND"),
        ({"fullName": "A", "sourceId": "garbage"}, ["input", "sourceId"], "NOT_FOUND"),
    ]
    for fields, path, code in cases:
        payload = (await api.data(CREATE, {"input": fields}, **alice.auth))["createContact"]
        assert payload["contact"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(path, code)], fields
    assert (await api.data(LIST, {}, **alice.auth))["contacts"]["totalCount"] == 0


async def test_email_unique_among_live_contacts(api: Api, alice: Account, bob: Account) -> None:
    first = await create(api, alice, fullName="One", email="dup@example.com", emails=["other@example.com"])
    for fields in ({"email": "DUP@example.com"}, {"email": "other@example.com"}, {"emails": ["dup@example.com"]}):
        payload = (await api.data(CREATE, {"input": {"fullName": "Two", **fields}}, **alice.auth))["createContact"]
        assert payload["userErrors"][0]["code"] == "DUPLICATE"
        assert first["id"] in payload["userErrors"][0]["message"]
    # another workspace may hold the same address
    await create(api, bob, fullName="Bob's", email="dup@example.com")
    # once the first is deleted the address is free again, and restoring the first is then refused
    await api.data(DELETE, {"id": first["id"]}, **alice.auth)
    second = await create(api, alice, fullName="Two", email="dup@example.com")
    restored = (await api.data(RESTORE, {"id": first["id"]}, **alice.auth))["restoreContact"]
    assert restored["userErrors"][0]["code"] == "DUPLICATE" and second["id"] in restored["userErrors"][0]["message"]
    # updating another contact onto a taken address is refused too
    third = await create(api, alice, fullName="Three")
    updated = (await api.data(UPDATE, {"id": third["id"], "input": {"email": "dup@example.com"}}, **alice.auth))["updateContact"]
    assert updated["userErrors"][0]["code"] == "DUPLICATE"


async def test_remote_id_unique_per_source(api: Api, alice: Account) -> None:
    source = (await api.data(
        'mutation { createSource(input: {name: "crm", displayName: "CRM", provider: API}) { source { id } } }', **alice.auth
    ))["createSource"]["source"]["id"]
    first = await create(api, alice, fullName="A", sourceId=source, remoteId="r1")
    again = (await api.data(CREATE, {"input": {"fullName": "B", "sourceId": source, "remoteId": "r1"}}, **alice.auth))["createContact"]
    assert again["userErrors"][0]["code"] == "DUPLICATE" and first["id"] in again["userErrors"][0]["message"]
    await create(api, alice, fullName="C", remoteId="r1")  # no source: another key


async def test_update_delete_restore(api: Api, alice: Account) -> None:
    c = await create(api, alice, fullName="Grace", title="RAdm", city="Arlington")
    updated = (await api.data(UPDATE, {"id": c["id"], "input": {"title": None, "tags": ["navy"]}}, **alice.auth))["updateContact"]
    assert updated["userErrors"] == []
    assert updated["contact"]["title"] is None and updated["contact"]["city"] == "Arlington"
    assert updated["contact"]["tags"] == ["navy"]
    empty = (await api.data(UPDATE, {"id": c["id"], "input": {"fullName": ""}}, **alice.auth))["updateContact"]
    assert empty["userErrors"][0]["code"] == "REQUIRED"
    deleted = (await api.data(DELETE, {"id": c["id"]}, **alice.auth))["deleteContact"]
    assert deleted["contact"]["deletedAt"] is not None
    assert (await api.data(LIST, {}, **alice.auth))["contacts"]["totalCount"] == 0
    assert (await api.data(LIST, {"filter": {"includeDeleted": True}}, **alice.auth))["contacts"]["totalCount"] == 1
    again = (await api.data(DELETE, {"id": c["id"]}, **alice.auth))["deleteContact"]
    assert again["userErrors"][0]["code"] == "NOT_FOUND"
    restored = (await api.data(RESTORE, {"id": c["id"]}, **alice.auth))["restoreContact"]
    assert restored["contact"]["deletedAt"] is None


async def test_filters_and_combinations(api: Api, alice: Account) -> None:
    await create(api, alice, fullName="Alice Smith", email="alice@acme.com", company="Acme", city="Paris", state="IDF",
                 tags=["vip", "customer"], contactType="person", status="active")
    await create(api, alice, fullName="Bob Stone", email="bob@globex.com", company="Globex", city="Berlin",
                 tags=["customer"], contactType="person", status="lead")
    await create(api, alice, fullName="Carol Smith", company="acme labs", city="Paris", tags=[], status="active")

    async def find(f: dict[str, Any], search: str | None = None) -> list[str]:
        return sorted(names(await api.data(LIST, {"filter": f, "search": search}, **alice.auth)))

    assert await find({"fullName": {"contains": "smith"}}) == ["Alice Smith", "Carol Smith"]
    assert await find({"fullName": {"startsWith": "bob"}}) == ["Bob Stone"]
    assert await find({"email": {"isNull": True}}) == ["Carol Smith"]
    assert await find({"email": {"eq": "bob@globex.com"}}) == ["Bob Stone"]
    assert await find({"company": {"in": ["Acme", "Globex"]}}) == ["Alice Smith", "Bob Stone"]
    assert await find({"city": {"neq": "Paris"}}) == ["Bob Stone"]
    assert await find({"state": {"eq": "IDF"}}) == ["Alice Smith"]
    assert await find({"contactType": {"isNull": True}}) == ["Carol Smith"]
    assert await find({"status": {"eq": "lead"}}) == ["Bob Stone"]
    assert await find({"tags": {"eq": "vip"}}) == ["Alice Smith"]
    assert await find({"tags": {"in": ["vip", "customer"]}}) == ["Alice Smith", "Bob Stone"]
    assert await find({"tags": {"neq": "vip"}}) == ["Bob Stone", "Carol Smith"]
    assert await find({"tags": {"isNull": True}}) == ["Carol Smith"]
    assert await find({"tags": {"contains": "CUST"}}) == ["Alice Smith", "Bob Stone"]
    assert await find({"tags": {"startsWith": "cus"}}) == ["Alice Smith", "Bob Stone"]
    assert await find({"or": [{"city": {"eq": "Berlin"}}, {"tags": {"eq": "vip"}}]}) == ["Alice Smith", "Bob Stone"]
    assert await find({"and": [{"city": {"eq": "Paris"}}, {"not": {"status": {"eq": "active"}}}]}) == []
    assert await find({"not": {"company": {"contains": "acme"}}}) == ["Bob Stone"]
    assert await find({"createdAt": {"lte": "2000-01-01T00:00:00Z"}}) == []
    assert await find({"updatedAt": {"gte": "2000-01-01T00:00:00Z"}}) == ["Alice Smith", "Bob Stone", "Carol Smith"]
    assert await find({"id": {"in": [base64.b64encode(f"Contact:{uuid.uuid4()}".encode()).decode()]}}) == []
    assert await find({"lastContactAt": {"isNull": True}}) == ["Alice Smith", "Bob Stone", "Carol Smith"]
    assert await find({}, "acme") == ["Alice Smith", "Carol Smith"]  # company and the email's domain
    assert await find({}, "globex") == ["Bob Stone"]
    assert await find({"city": {"eq": "Paris"}}, "smith") == ["Alice Smith", "Carol Smith"]


async def test_source_owner_and_last_contact_filters(api: Api, alice: Account) -> None:
    source = (await api.data(
        'mutation { createSource(input: {name: "crm", displayName: "CRM", provider: API}) { source { id } } }', **alice.auth
    ))["createSource"]["source"]["id"]
    members = await api.data("{ members { edges { node { id } } } }", **alice.auth)
    owner = members["members"]["edges"][0]["node"]["id"]
    a = await create(api, alice, fullName="Owned", ownerId=owner, sourceId=source, remoteId="1")
    b = await create(api, alice, fullName="Talked")
    await record(api, alice, contactId=b["id"], type="call.logged", resourceId="c1", occurredAt="2026-03-01T10:00:00Z")

    async def find(f: dict[str, Any]) -> list[str]:
        return sorted(names(await api.data(LIST, {"filter": f}, **alice.auth)))

    assert await find({"sourceId": {"eq": source}}) == ["Owned"]
    assert await find({"ownerId": {"in": [owner]}}) == ["Owned"]
    assert await find({"ownerId": {"isNull": True}}) == ["Talked"]
    assert await find({"lastContactAt": {"gte": "2026-02-01T00:00:00Z"}}) == ["Talked"]
    assert await find({"or": [{"lastContactAt": {"isNull": True}}, {"id": {"eq": a["id"]}}]}) == ["Owned"]
    detail = await api.data("query($id: ID!) { node(id: $id) { ... on Contact { owner { id role } source { name } } } }",
                            {"id": a["id"]}, **alice.auth)
    assert detail["node"] == {"owner": {"id": owner, "role": "OWNER"}, "source": {"name": "crm"}}


async def walk(api: Api, who: Account, order: list[dict[str, str]], *, backward: bool = False, size: int = 2) -> list[str]:
    """Every name, page by page, forwards (first/after) or backwards (last/before)."""
    seen: list[str] = []
    cursor = None
    while True:
        args = {"orderBy": order, ("last" if backward else "first"): size, ("before" if backward else "after"): cursor}
        conn = (await api.data(LIST, args, **who.auth))["contacts"]
        page = [e["node"]["fullName"] for e in conn["edges"]]
        seen = page + seen if backward else seen + page
        info = conn["pageInfo"]
        if not (info["hasPreviousPage"] if backward else info["hasNextPage"]):
            return seen
        cursor = info["startCursor"] if backward else info["endCursor"]


async def test_every_sort_field_pages_both_ways(api: Api, alice: Account) -> None:
    spec = [("Dora", 0, None), ("Abe", 3, "2026-10-01T09:00:00Z"), ("Cy", 1, "2026-06-01T09:00:00Z"),
            ("Bea", 3, "2026-10-01T09:00:00Z"), ("Eve", 0, None)]
    for name, messages, at in spec:
        c = await create(api, alice, fullName=name)
        for i in range(messages):
            await record(api, alice, contactId=c["id"], type="message.sent", resourceId=f"{name}{i}", occurredAt=at)
    for field in ("FULL_NAME", "CREATED_AT", "UPDATED_AT", "LAST_CONTACT_AT", "STRENGTH"):
        for direction in ("ASC", "DESC"):
            order = [{"field": field, "direction": direction}]
            whole = names(await api.data(LIST, {"orderBy": order, "first": 100}, **alice.auth))
            assert len(whole) == 5
            assert await walk(api, alice, order) == whole, (field, direction)
            assert await walk(api, alice, order, backward=True) == whole, (field, direction)
    by = lambda f, d="ASC": api.data(LIST, {"orderBy": [{"field": f, "direction": d}, {"field": "FULL_NAME"}]}, **alice.auth)  # noqa: E731
    assert names(await by("FULL_NAME")) == ["Abe", "Bea", "Cy", "Dora", "Eve"]
    assert names(await by("CREATED_AT", "DESC")) == ["Eve", "Bea", "Cy", "Abe", "Dora"]
    assert names(await by("LAST_CONTACT_AT"))[:3] == ["Cy", "Abe", "Bea"]  # never contacted sort last
    assert names(await by("STRENGTH", "DESC"))[:3] == ["Abe", "Bea", "Cy"]


async def test_cursor_paging_under_concurrent_inserts(api: Api, alice: Account) -> None:
    for i in range(6):
        await create(api, alice, fullName=f"N{i}")
    order = [{"field": "CREATED_AT", "direction": "ASC"}]
    first = (await api.data(LIST, {"orderBy": order, "first": 3}, **alice.auth))["contacts"]
    # inserts land while the client pages: new rows sort after, no row repeats or is skipped
    await asyncio.gather(*(create(api, alice, fullName=f"Late{i}") for i in range(3)))
    rest = (await api.data(LIST, {"orderBy": order, "first": 100, "after": first["pageInfo"]["endCursor"]}, **alice.auth))["contacts"]
    got = [e["node"]["fullName"] for e in first["edges"] + rest["edges"]]
    assert got[:6] == [f"N{i}" for i in range(6)] and sorted(got[6:]) == ["Late0", "Late1", "Late2"]
    back = (await api.data(LIST, {"orderBy": order, "last": 2, "before": first["pageInfo"]["endCursor"]}, **alice.auth))["contacts"]
    assert [e["node"]["fullName"] for e in back["edges"]] == ["N0", "N1"]
    bad = await api(LIST, {"after": "nonsense"}, **alice.auth)
    assert codes(bad) == ["BAD_USER_INPUT"]


async def test_merge_moves_everything_in_one_go(api: Api, alice: Account) -> None:
    keep = await create(api, alice, fullName="Keep", email="keep@acme.com", tags=["a"])
    dup = await create(api, alice, fullName="Dup", email="dup@acme.com", phone="123", tags=["b"], customFields={"x": 1})
    friend = await create(api, alice, fullName="Friend", email="friend@acme.com")
    await record(api, alice, contactId=keep["id"], type="message.sent", resourceId="m1", occurredAt="2026-09-01T10:00:00Z")
    await record(api, alice, contactId=dup["id"], type="message.received", resourceId="m2", occurredAt="2026-09-02T10:00:00Z",
                 metadata={"threadId": "t"}, participants=["friend@acme.com"])
    await record(api, alice, contactId=dup["id"], type="message.sent", resourceId="m1", occurredAt="2026-09-01T10:00:00Z")
    await relate(api, alice, dup["id"], friend["id"], "works_with")
    await relate(api, alice, friend["id"], keep["id"], "knows")
    await relate(api, alice, keep["id"], dup["id"], "knows")  # becomes a loop: dropped

    merged = (await api.data(MERGE, {"ids": [keep["id"], dup["id"]]}, **alice.auth))["mergeContacts"]
    assert merged["userErrors"] == []
    c = merged["contact"]
    assert c["emails"] == ["dup@acme.com"] and c["phone"] == "123" and c["tags"] == ["a", "b"] and c["customFields"] == {"x": 1}
    gone = await api.data("query($id: ID!) { node(id: $id) { ... on Contact { deletedAt } } }", {"id": dup["id"]}, **alice.auth)
    assert gone["node"]["deletedAt"] is not None
    view = await api.data("""query($id: ID!) { node(id: $id) { ... on Contact {
        activity { totalCount edges { node { resourceId } } }
        relationships { edges { node { kind sharedThreadCount other { id } } } }
        intelligence { sentCount receivedCount threadCount } } } }""", {"id": keep["id"]}, **alice.auth)
    node = view["node"]
    assert sorted(e["node"]["resourceId"] for e in node["activity"]["edges"]) == ["m1", "m2"]
    assert node["intelligence"] == {"sentCount": 1, "receivedCount": 1, "threadCount": 1}
    kinds = sorted((e["node"]["kind"], e["node"]["other"]["id"]) for e in node["relationships"]["edges"])
    assert kinds == sorted([("works_with", friend["id"]), ("knows", friend["id"]), ("shared_thread", friend["id"])])
    # the merged address now finds the survivor
    event = await record(api, alice, address="DUP@acme.com", type="note.added", resourceId="n1", occurredAt="2026-09-03T10:00:00Z")
    assert event["contact"]["id"] == keep["id"]


async def test_merge_refusals(api: Api, alice: Account, bob: Account) -> None:
    a = await create(api, alice, fullName="A")
    foreign = await create(api, bob, fullName="Foreign")
    for ids, code in (([a["id"]], "INVALID"), ([a["id"], a["id"]], "INVALID"), ([a["id"], foreign["id"]], "NOT_FOUND")):
        payload = (await api.data(MERGE, {"ids": ids}, **alice.auth))["mergeContacts"]
        assert payload["contact"] is None and payload["userErrors"][0]["code"] == code
    assert (await api.data(LIST, {}, **alice.auth))["contacts"]["totalCount"] == 1


async def test_isolation(api: Api, alice: Account, bob: Account) -> None:
    theirs = await create(api, bob, fullName="Secret", email="secret@bob.com")
    assert (await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": theirs["id"]}, **alice.auth))["node"] is None
    assert (await api.data(LIST, {"search": "secret"}, **alice.auth))["contacts"]["totalCount"] == 0
    for doc, extra in ((UPDATE, {"input": {"fullName": "Mine"}}), (DELETE, {}), (RESTORE, {})):
        body = await api.data(doc, {"id": theirs["id"], **extra}, **alice.auth)
        payload = next(iter(body.values()))
        assert payload["contact"] is None and payload["userErrors"][0]["code"] == "NOT_FOUND"
    missing = base64.b64encode(f"Contact:{uuid.uuid4()}".encode()).decode()
    body = await api.data(UPDATE, {"id": missing, "input": {"fullName": "X"}}, **alice.auth)
    assert body["updateContact"]["userErrors"][0]["message"] == "Contact not found"
    # the same address is free in alice's workspace
    await create(api, alice, fullName="Mine", email="secret@bob.com")


async def test_scopes(api: Api, alice: Account) -> None:
    c = await create(api, alice, fullName="Scoped")
    read_key = (await api.data(CREATE_KEY, {"input": {"name": "r", "scopes": ["contacts:read"]}}, **alice.auth))["createApiKey"]["secret"]
    other_key = (await api.data(CREATE_KEY, {"input": {"name": "s", "scopes": ["sources:read"]}}, **alice.auth))["createApiKey"]["secret"]
    assert (await api.data(LIST, {}, api_key=read_key))["contacts"]["totalCount"] == 1
    assert codes(await api(CREATE, {"input": {"fullName": "No"}}, api_key=read_key)) == ["FORBIDDEN"]
    assert codes(await api(DELETE, {"id": c["id"]}, api_key=read_key)) == ["FORBIDDEN"]
    assert codes(await api(LIST, {}, api_key=other_key)) == ["FORBIDDEN"]
    assert codes(await api(LIST, {})) == ["UNAUTHENTICATED"] or (await api.post(LIST)).status_code == 401


async def test_import_contacts_upserts_by_remote_id(api: Api, alice: Account, app: Any) -> None:
    """The import entry point (used by the jobs of issue 5) shares createContact's rules."""
    db = app.state.services.db
    me = await api.data("{ viewer { user { id } } workspace { id } }", **alice.auth)
    ws = uuid.UUID(base64.b64decode(me["workspace"]["id"]).decode().split(":")[1])
    p = Principal(user_id=uuid.uuid4(), workspace_id=ws, role="OWNER", scopes=frozenset({"*"}))
    items = [
        {"id": "r1", "fullName": "One", "email": "one@x.com"},
        {"remoteId": "r2", "fullName": "Two", "tags": ["t"]},
        {"remoteId": "r3", "fullName": ""},
        {"remoteId": "r4", "fullName": "Four", "email": "one@x.com"},
    ]
    async with db.tenant(ws) as s:
        first = await contact_service.import_contacts(s, p, items, None, start_index=10)
        await s.commit()
    assert [(o.index, o.outcome) for o in first] == [(10, "CREATED"), (11, "CREATED"), (12, "FAILED"), (13, "FAILED")]
    assert "fullName" in (first[2].error or "") and "DUPLICATE" not in (first[3].error or "") and "already exists" in (first[3].error or "")
    again = [{"id": "r1", "fullName": "One", "email": "one@x.com"}, {"remoteId": "r2", "fullName": "Two!", "tags": ["t"]},
             {"remoteId": "r1", "deleted": True}]
    async with db.tenant(ws) as s:
        second = await contact_service.import_contacts(s, p, again[:2], None)
        third = await contact_service.import_contacts(s, p, again[2:], None)
        await s.commit()
    assert [o.outcome for o in second] == ["SKIPPED", "UPDATED"] and [o.outcome for o in third] == ["DELETED"]
    assert sorted(names(await api.data(LIST, {}, **alice.auth))) == ["Two!"]
