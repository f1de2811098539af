"""Activity and contact intelligence, against figures worked out by hand on a fixed timeline."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Account, Api
from tests.contacts_support import INTELLIGENCE, LIST, RECORD, create, record

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day(days_ago: int, hour: int) -> str:
    return (TODAY - timedelta(days=days_ago) + timedelta(hours=hour)).isoformat().replace("+00:00", "Z")


async def figures(api: Api, who: Account, contact_id: str) -> dict[str, Any]:
    return (await api.data(INTELLIGENCE, {"id": contact_id}, **who.auth))["node"]["intelligence"]


TIMELINE = [
    # type, resourceId, when, thread
    ("message.received", "r1", day(40, 9), "A"),
    ("message.sent", "s1", day(40, 12), "A"),       # answers r1 after 3 h
    ("message.received", "r2", day(39, 9), "A"),    # nothing sent after it in A: unanswered
    ("message.received", "r3", day(38, 14), "B"),
    ("message.sent", "s2", day(37, 14), "B"),       # answers r3 after 24 h
    ("message.sent", "s3", day(36, 9), "C"),
    ("call.logged", "c1", day(35, 9), None),
    ("calendar_event.created", "cal1", day(34, 0), None),  # the last contact
    ("message.delivered", "d1", day(2, 9), "A"),    # not a contact
    ("note.added", "n1", day(1, 3), None),          # not a contact
]


async def test_intelligence_on_a_fixed_timeline(api: Api, alice: Account) -> None:
    c = await create(api, alice, fullName="Timeline", email="t@example.com")
    events = list(TIMELINE)
    random.Random(7).shuffle(events)  # arrival order must not matter
    for type_, resource, when, thread in events:
        await record(api, alice, contactId=c["id"], type=type_, resourceId=resource, occurredAt=when,
                     metadata={"threadId": thread} if thread else {})
    got = await figures(api, alice, c["id"])
    elapsed = (datetime.now(UTC) - (TODAY - timedelta(days=34))).total_seconds() / 86400
    strength = math.log(7) / math.log(50) * 0.5 ** (elapsed / 90)  # n = 3 sent + 3 received
    assert abs(got.pop("strength") - strength) < 2e-4
    assert got == {
        "sentCount": 3, "receivedCount": 3,
        "firstContactAt": day(40, 9), "lastContactAt": day(34, 0),
        "lastSentAt": day(36, 9), "lastReceivedAt": day(38, 14),
        "daysSinceContact": 34,
        "replyRate": 0.6667,               # 2 of 3 received answered
        "avgResponseTimeHours": 13.5,      # (3 + 24) / 2
        "preferredContactHours": [9, 14, 0],  # 9h x4, 14h x2, then 0h and 12h once: the earlier first
        "threadCount": 3,
        "communicationPattern": "BALANCED",  # 3 / 6
        "health": "AT_RISK",               # first contact 40 days ago, idle 34 > 30
    }
    # recording everything again changes nothing and returns the same events
    for type_, resource, when, thread in TIMELINE[:3]:
        again = await record(api, alice, contactId=c["id"], type=type_, resourceId=resource, occurredAt=when,
                             metadata={"threadId": thread} if thread else {})
        assert again["resourceId"] == resource
    assert {**await figures(api, alice, c["id"]), "strength": None} == {**got, "strength": None}
    timeline = await api.data("""query($id: ID!) { node(id: $id) { ... on Contact {
        all: activity(first: 3) { totalCount edges { node { resourceId } } pageInfo { hasNextPage endCursor } }
        messages: activity(types: ["message.sent"], since: "%s") { totalCount edges { node { resourceId } } } } } }""" % day(37, 0),
        {"id": c["id"]}, **alice.auth)
    node = timeline["node"]
    assert node["all"]["totalCount"] == 10
    assert [e["node"]["resourceId"] for e in node["all"]["edges"]] == ["n1", "d1", "cal1"]  # newest first
    assert [e["node"]["resourceId"] for e in node["messages"]["edges"]] == ["s3", "s2"]
    rest = await api.data("""query($id: ID!, $after: String) { node(id: $id) { ... on Contact {
        activity(first: 100, after: $after) { edges { node { resourceId } } } } } }""",
        {"id": c["id"], "after": node["all"]["pageInfo"]["endCursor"]}, **alice.auth)
    assert [e["node"]["resourceId"] for e in rest["node"]["activity"]["edges"]] == ["c1", "s3", "s2", "r3", "r2", "s1", "r1"]


async def test_health_and_patterns(api: Api, alice: Account) -> None:
    async def contact_with(*events: tuple[str, str]) -> dict[str, Any]:
        c = await create(api, alice, fullName="H")
        for i, (type_, when) in enumerate(events):
            await record(api, alice, contactId=c["id"], type=type_, resourceId=str(i), occurredAt=when)
        return await figures(api, alice, c["id"])

    none = await contact_with()
    assert none == {**none, "health": "NEW", "strength": 0.0, "communicationPattern": None, "replyRate": None,
                    "avgResponseTimeHours": None, "daysSinceContact": None, "preferredContactHours": [], "sentCount": 0}
    assert (await contact_with(("message.sent", day(5, 1))))["health"] == "NEW"
    strong = await contact_with(("message.sent", day(20, 1)), ("message.sent", day(2, 1)), ("message.received", day(3, 1)),
                                ("message.sent", day(4, 1)))
    assert strong["health"] == "STRONG" and strong["communicationPattern"] == "INITIATOR"  # 3 / 4 > 0.6
    dormant = await contact_with(("message.received", day(200, 1)), ("message.received", day(100, 1)))
    assert dormant["health"] == "DORMANT" and dormant["communicationPattern"] == "RESPONDER" and dormant["replyRate"] == 0.0
    future_proof = await contact_with(("note.added", day(100, 1)))
    assert future_proof["health"] == "NEW" and future_proof["lastContactAt"] is None


async def test_record_by_address_and_refusals(api: Api, alice: Account, bob: Account) -> None:
    event = await record(api, alice, address=" New.Person@Example.com ", type="message.received", resourceId="x1",
                         occurredAt=day(1, 1), summary="Hello", participants=["Someone@else.com"])
    assert event["contact"]["email"] == "new.person@example.com"
    assert event["participants"] == ["someone@else.com"] and event["summary"] == "Hello"
    same = await record(api, alice, address="new.person@example.com", type="message.received", resourceId="x1",
                        occurredAt=day(9, 9), summary="changed")
    assert same["id"] == event["id"] and same["summary"] == "Hello"  # a no-op: the stored event
    assert (await api.data(LIST, {}, **alice.auth))["contacts"]["totalCount"] == 1
    theirs = await create(api, bob, fullName="Theirs")
    cases = [
        ({"contactId": theirs["id"]}, ["input", "contactId"], "NOT_FOUND"),
        ({}, ["input", "contactId"], "REQUIRED"),
        ({"address": "nope"}, ["input", "address"], "INVALID"),
        ({"address": "a@b.com", "type": "Not A Type"}, ["input", "type"], "INVALID"),
        ({"address": "a@b.com", "resourceId": " "}, ["input", "resourceId"], "REQUIRED"),
        ({"address": "a@b.com", "metadata": [1]}, ["input", "metadata"], "INVALID"),
    ]
    for fields, path, code in cases:
        payload = (await api.data(RECORD, {"input": {"type": "note.added", "resourceId": "r", "occurredAt": day(1, 1), **fields}},
                                  **alice.auth))["recordActivity"]
        assert payload["event"] is None and [(e["field"], e["code"]) for e in payload["userErrors"]] == [(path, code)], fields
    assert (await api.data(LIST, {}, **alice.auth))["contacts"]["totalCount"] == 1  # nothing written
    other = await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": event["id"]}, **bob.auth)
    assert other["node"] is None
    read_key = (await api.data("mutation { createApiKey(input: {name: \"r\", scopes: [\"contacts:read\"]}) { secret } }",
                               **alice.auth))["createApiKey"]["secret"]
    body = await api(RECORD, {"input": {"address": "z@z.com", "type": "note.added", "resourceId": "r", "occurredAt": day(1, 1)}},
                     api_key=read_key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_derived_edges_count_conversations_and_weigh(api: Api, alice: Account) -> None:
    p = await create(api, alice, fullName="P", email="p@acme.com")
    q = await create(api, alice, fullName="Q", email="q@acme.com")
    r = await create(api, alice, fullName="R", email="r@other.org")
    await record(api, alice, contactId=p["id"], type="message.sent", resourceId="m1", occurredAt=day(10, 0),
                 metadata={"threadId": "t1"}, participants=["q@acme.com"])
    await record(api, alice, contactId=q["id"], type="message.received", resourceId="m2", occurredAt=day(9, 0),
                 metadata={"threadId": "t1"}, participants=["p@acme.com"])  # same thread: not counted twice
    await record(api, alice, contactId=p["id"], type="message.sent", resourceId="m3", occurredAt=day(5, 0),
                 metadata={"threadId": "t2"}, participants=["q@acme.com", "r@other.org"])
    await record(api, alice, contactId=p["id"], type="calendar_event.created", resourceId="cal", occurredAt=day(5, 0),
                 metadata={"start": day(4, 10), "duration": 30, "location": "HQ", "participants": ["q@acme.com"]})
    await record(api, alice, contactId=p["id"], type="calendar_event.created", resourceId="cal", occurredAt=day(5, 0))  # replay
    view = await api.data("""query($id: ID!) { node(id: $id) { ... on Contact {
        relationships(first: 20) { totalCount edges { node { kind weight sharedThreadCount sharedCalendarCount lastSeenAt
                                                             other { ... on Contact { fullName } } } } } } } }""",
                          {"id": p["id"]}, **alice.auth)
    edges = {(e["node"]["kind"], e["node"]["other"]["fullName"]): e["node"] for e in view["node"]["relationships"]["edges"]}
    assert set(edges) == {("shared_thread", "Q"), ("shared_thread", "R"), ("shared_calendar_event", "Q")}
    elapsed = (datetime.now(UTC) - (TODAY - timedelta(days=5))).total_seconds() / 86400
    decay = 0.5 ** (elapsed / 90)
    pq = edges[("shared_thread", "Q")]
    assert (pq["sharedThreadCount"], pq["sharedCalendarCount"], pq["lastSeenAt"]) == (2, 0, day(5, 0))
    assert abs(pq["weight"] - math.log(3) / math.log(50) * decay) < 2e-4  # ~0.27
    cal = edges[("shared_calendar_event", "Q")]
    assert (cal["sharedThreadCount"], cal["sharedCalendarCount"]) == (0, 1)
    assert abs(cal["weight"] - math.log(2) / math.log(50) * decay) < 2e-4
    assert edges[("shared_thread", "R")]["sharedThreadCount"] == 1
    graph = await api.data("""query($f: ID!) { relationshipGraph(focus: $f, kinds: ["shared_thread", "shared_calendar_event", "same_domain"]) {
        nodes { fullName } edges { source target kinds weight } } }""", {"f": p["id"]}, **alice.auth)
    pair = next(e for e in graph["relationshipGraph"]["edges"] if {e["source"], e["target"]} == {p["id"], q["id"]})
    assert pair["kinds"] == ["same_domain", "shared_calendar_event", "shared_thread"]
    assert abs(pair["weight"] - math.log(4) / math.log(50) * decay) < 2e-4  # 2 threads + 1 event together
    computed = await api.data("""query($id: ID!) { node(id: $id) { ... on Contact {
        relationships(kinds: ["same_domain", "same_company"]) { totalCount edges { node { kind weight other { ... on Contact { fullName } } } } } } } }""",
                              {"id": p["id"]}, **alice.auth)
    assert [(e["node"]["kind"], e["node"]["weight"], e["node"]["other"]["fullName"])
            for e in computed["node"]["relationships"]["edges"]] == [("same_domain", 0.0, "Q")]
