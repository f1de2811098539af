"""recomputeRelationships: a job that rebuilds derived edges and intelligence from activity."""

from __future__ import annotations

from typing import Any

import psycopg

from app.config import Settings
from tests.conftest import Account, Api
from tests.contacts_support import INTELLIGENCE, create, record, relate
from tests.jobs_support import running_worker, wait_for

EDGES = """
query($id: ID!) { node(id: $id) { ... on Contact {
  relationships(first: 20) { edges { node { kind weight sharedThreadCount sharedCalendarCount lastSeenAt } } }
} } }
"""
RECOMPUTE = "mutation { recomputeRelationships { job { id kind status } userErrors { code message } } }"


async def snapshot(api: Api, who: Account, contact_ids: list[str]) -> list[Any]:
    out = []
    for cid in contact_ids:
        out.append((await api.data(INTELLIGENCE, {"id": cid}, **who.auth))["node"]["intelligence"])
        edges = (await api.data(EDGES, {"id": cid}, **who.auth))["node"]["relationships"]["edges"]
        out.append(sorted((e["node"]["kind"], e["node"]["sharedThreadCount"], e["node"]["sharedCalendarCount"],
                           e["node"]["lastSeenAt"]) for e in edges))
    return out


async def test_recompute_rebuilds_derived_edges_and_intelligence(api: Api, alice: Account, settings: Settings) -> None:
    ann = await create(api, alice, fullName="Ann", email="ann@acme.test")
    ben = await create(api, alice, fullName="Ben", email="ben@acme.test")
    cid = await create(api, alice, fullName="Cid", email="cid@other.test")
    await record(api, alice, contactId=ann["id"], type="message.sent", resourceId="m1",
                 occurredAt="2026-11-01T09:00:00Z", participants=["ben@acme.test"], metadata={"threadId": "t1"})
    await record(api, alice, contactId=ben["id"], type="message.received", resourceId="m2",
                 occurredAt="2026-11-01T10:00:00Z", participants=["ann@acme.test"], metadata={"threadId": "t1"})
    await record(api, alice, contactId=cid["id"], type="calendar_event.created", resourceId="e1",
                 occurredAt="2026-11-02T10:00:00Z", participants=["ann@acme.test"], metadata={"start": "2026-11-02T10:00:00Z"})
    manual = await relate(api, alice, ann["id"], cid["id"], "works_with", weight=0.7)
    ids = [ann["id"], ben["id"], cid["id"]]
    before = await snapshot(api, alice, ids)
    assert any(kind == "shared_thread" for kind, *_ in before[1]), before

    # Drift: derived state lost (as after a bug or a change of rules); manual edges stay.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("delete from relationships where kind in ('shared_thread', 'shared_calendar_event')")
        conn.execute("delete from contact_intelligence")
        conn.execute("delete from contact_threads")
        conn.execute("delete from conversation_participants")
    assert await snapshot(api, alice, ids) != before

    with running_worker(settings):
        started = (await api.data(RECOMPUTE, **alice.auth))["recomputeRelationships"]
        assert started["userErrors"] == [] and started["job"]["kind"] == "RECOMPUTE_RELATIONSHIPS"
        done = await wait_for(api, alice, started["job"]["id"])
    assert done["status"] == "COMPLETED", done
    assert done["result"]["contacts"] == 3 and done["result"]["events"] == 3
    assert await snapshot(api, alice, ids) == before
    still = await api.data("query($id: ID!) { node(id: $id) { ... on Relationship { kind weight } } }",
                           {"id": manual["id"]}, **alice.auth)
    assert still["node"] == {"kind": "works_with", "weight": 0.7}


async def test_recompute_needs_contacts_write(api: Api, alice: Account) -> None:
    key = (await api.data('mutation { createApiKey(input: {name: "r", scopes: ["jobs:write", "contacts:read"]}) { secret } }',
                          **alice.auth))["createApiKey"]["secret"]
    body = await api(RECOMPUTE, api_key=key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
