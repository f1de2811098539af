"""Frontend pages: eight queries as Apollo Client sends them, our server against a hand-written SQL baseline.

Seeds a database of its own (created, migrated with the repo's migrations, dropped at the end)
with deterministic data: 10,000 contacts, 50,000 relationships, 30,000 activity events and the
intelligence facts kept from them (rebuilt by the app's own `activity.rebuild_facts`), 5,000
records of two object types (deals: `stage` SELECT, `amount` FLOAT; tickets), 1,000 documents
(some with 2 or 3 versions, chunked for search, linked to contacts). Then it serves the API as
`ctxgraph serve --no-worker` does (uvicorn, one process, this checkout's app) and a baseline
(Starlette + psycopg_pool) that answers each page with ONE statement building the same JSON,
checks that both answer the same data, and drives each page with wrk at concurrency 10, in
interleaved rounds (ours, then the baseline, page by page), reporting the median round:

  1 contacts list     contacts(first: 50): plain fields and pageInfo
  2 nested            50 contacts x relationships(first: 10) x other contact
  3 contact detail    node(id): plain fields, intelligence, activity(20), relationships(10), documents(5)
  4 records           records of a type, filtered on stage, ordered by amount, totalCount
  5 documents         documents(first: 50) with their latest version
  6 node              node(id) of one contact
  7 by strength       contacts ordered by STRENGTH with intelligence
  8 search            search for a common word across contacts, records, documents

    .venv/bin/python bench/frontend.py [--seconds 10] [--rounds 3] [--only 1,3]

Columns: requests/s of ours and of the baseline and their ratio; p50/p99 latency; CPU ms per
request of each server process (/proc/<pid>/stat utime+stime) and of PostgreSQL (the client
backends of the bench database, summed from /proc: parallel query is off in that database so
that no work runs in workers the sum would miss); SQL statements per request of ours (one warm
request counted in process by an engine listener, see support.statements_per_request: the app
exports no statement counter); whether the page was planned (`ctxgraph_plan_fallbacks_total`
on /metrics did not move while it ran; "unknown" while the app has no such counter); and the
PostGraphile figures of the issue with the target, 1.5 times those.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # noqa: E402
    CONCURRENCY, CONTACTS, Baseline, Graph, analyze, api_env, backends_cpu_ms, cpu_delta, cpu_ms, database,
    free_port, global_id, load_wrk, migrated_settings, seed_graph, serve_api, serve_baseline, sign_up,
    statements_per_request, stop, workspace_uuid,
)

EVENTS, RECORDS, TICKETS, DOCUMENTS = 30_000, 5_000, 1_500, 1_000
HUB_EVENTS, HUB_DOCUMENTS = 40, 8
WORD = "harbor"
"""The common word of page 8: in 7 deal names, 9 contact names, 250 document titles and a third of
the bodies, a quarter of the ticket subjects and a tenth of the companies, so that the first 20
hits mix the three types (and ties of score)."""

# ---------------------------------------------------------------- the pages, as Apollo Client sends them
# Named operations, sizes and ids as variables, named fragments, and __typename in every
# selection set but the operation's (addTypename), inside fragments as well as beside them.

CONTACTS_LIST = """query ContactsList($first: Int!) {
  contacts(first: $first) {
    __typename
    edges { __typename node { __typename ...ContactRow } }
    pageInfo { __typename ...PageInfoFields }
  }
}
fragment ContactRow on Contact { __typename id fullName email company title tags updatedAt }
fragment PageInfoFields on PageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }"""

NESTED = """query NestedContacts($first: Int!, $relationshipsFirst: Int!) {
  contacts(first: $first) {
    __typename
    edges { __typename node { __typename id fullName
      relationships(first: $relationshipsFirst) { __typename edges { __typename node { __typename ...RelationshipRow } } } } }
  }
}
fragment RelationshipRow on Relationship {
  __typename id kind weight other { __typename ... on Contact { __typename id fullName } }
}"""

DETAIL = """query ContactDetail($id: ID!, $activityFirst: Int!, $relationshipsFirst: Int!, $documentsFirst: Int!) {
  node(id: $id) { __typename id ...ContactDetail }
}
fragment ContactDetail on Contact {
  __typename id fullName email emails phone title company city state tags contactType status remoteId customFields
  createdAt updatedAt deletedAt
  intelligence { __typename sentCount receivedCount lastContactAt strength health replyRate }
  activity(first: $activityFirst) { __typename edges { __typename node { __typename id type occurredAt summary } } }
  relationships(first: $relationshipsFirst) { __typename edges { __typename node { __typename ...RelationshipRow } } }
  documents(first: $documentsFirst) { __typename edges { __typename node { __typename id title } } }
}
fragment RelationshipRow on Relationship {
  __typename id kind weight other { __typename ... on Contact { __typename id fullName } }
}"""

RECORDS_PAGE = """query RecordsOfType($objectTypeId: ID!, $filter: RecordFilter, $orderBy: [RecordOrder!], $first: Int!) {
  records(objectTypeId: $objectTypeId, filter: $filter, orderBy: $orderBy, first: $first) {
    __typename
    edges { __typename node { __typename ...RecordRow } }
    totalCount
  }
}
fragment RecordRow on Record { __typename id name fields updatedAt }"""

DOCUMENTS_PAGE = """query DocumentsList($first: Int!, $versionsFirst: Int!) {
  documents(first: $first) {
    __typename
    edges { __typename node { __typename ...DocumentRow } }
  }
}
fragment DocumentRow on Document {
  __typename id title status version updatedAt
  versions(first: $versionsFirst) { __typename edges { __typename node { __typename version title createdAt } } }
}"""

NODE = """query ContactNode($id: ID!) {
  node(id: $id) { __typename id ... on Contact { __typename fullName email } }
}"""

BY_STRENGTH = """query ContactsByStrength($first: Int!, $orderBy: [ContactOrder!]) {
  contacts(first: $first, orderBy: $orderBy) {
    __typename
    edges { __typename node { __typename ...StrongContact } }
  }
}
fragment StrongContact on Contact {
  __typename id fullName email company intelligence { __typename strength health lastContactAt }
}"""

SEARCH = """query Search($query: String!, $first: Int) {
  search(query: $query, first: $first) {
    __typename score
    node { __typename id ... on Contact { __typename fullName } ... on Record { __typename name } ... on Document { __typename title } }
  }
}"""


# ---------------------------------------------------------------- the baseline's SQL
# Written with small helpers so that each statement reads as the JSON it builds. `{name}` is a
# page size, written in per request (support.Baseline); every other brace is doubled.


def gid(type_name: str, column: str) -> str:
    """The global id (base64 of "Type:uuid") in SQL."""
    return f"translate(encode(convert_to('{type_name}:' || {column}::text, 'UTF8'), 'base64'), E'\\n', '')"


def uuid_of(param: str) -> str:
    """The uuid of the global id in parameter `param`."""
    return f"split_part(convert_from(decode(%({param})s, 'base64'), 'UTF8'), ':', 2)::uuid"


def dt(column: str) -> str:
    """The DateTime scalar in SQL: ISO 8601 in UTC, microseconds only when there are some, Z."""
    return (f"CASE WHEN {column} IS NOT NULL THEN to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            f"|| CASE WHEN date_trunc('second', {column}) = {column} THEN '' ELSE to_char({column}, '.US') END || 'Z' END")


def cursor(created_at: str, id_: str) -> str:
    """A (createdAt, id) cursor in SQL, as pagination.encode_cursor writes it (the session's time
    zone, as psycopg reads the value; braces doubled for str.format)."""
    iso = (f"to_char({created_at}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', {created_at}) = {created_at} "
           f"THEN '' ELSE to_char({created_at}, '.US') END || to_char({created_at}, 'TZH:TZM')")
    raw = f"'[{{{{\"dt\":\"' || {iso} || '\"}}}},{{{{\"id\":\"' || {id_}::text || '\"}}}}]'"
    return f"translate(encode(convert_to({raw}, 'UTF8'), 'base64'), E'+/=\\n', '-_')"


def obj(typename: str, **pairs: str) -> str:
    """json_build_object with __typename first; keys are the response keys."""
    return "json_build_object('__typename', '" + typename + "', " + ", ".join(f"'{k}', {v}" for k, v in pairs.items()) + ")"


def agg(element: str, order: str) -> str:
    return f"coalesce(json_agg({element} ORDER BY {order}), '[]')"


def data(field: str, value: str) -> str:
    return f"SELECT json_build_object('data', json_build_object('{field}', {value}))::text"


WEIGHT = ("CASE WHEN e.kind IN ('shared_thread', 'shared_calendar_event') "
          "THEN ctx_edge_weight(e.shared_thread_count + e.shared_calendar_count, e.last_seen_at) ELSE e.weight END")
DAYS_SINCE = "(extract(epoch FROM now() - {})::float8 / 86400)"
STRENGTH = ("CASE WHEN coalesce(i.sent_count, 0) + coalesce(i.received_count, 0) > 0 AND i.last_contact_at IS NOT NULL THEN "
            "round((least(1::float8, ln((i.sent_count + i.received_count + 1)::float8) / ln(50::float8)) "
            f"* power(0.5::float8, greatest(0::float8, {DAYS_SINCE.format('i.last_contact_at')}) / 90))::numeric, 4)::float8 "
            "ELSE 0::float8 END")
HEALTH = (f"CASE WHEN i.first_contact_at IS NULL OR {DAYS_SINCE.format('i.first_contact_at')} < 14 THEN 'NEW' "
          f"WHEN coalesce({DAYS_SINCE.format('i.last_contact_at')}, 0) > 90 THEN 'DORMANT' "
          f"WHEN coalesce({DAYS_SINCE.format('i.last_contact_at')}, 0) > 30 THEN 'AT_RISK' ELSE 'STRONG' END")
REPLY_RATE = "CASE WHEN i.received_count > 0 THEN round(i.reply_count::numeric / i.received_count, 4)::float8 END"
# contacts.STRENGTH_KEY: strength decays alike for everyone, so its order is this time-invariant key's.
STRENGTH_KEY = ("CASE WHEN coalesce(i.sent_count, 0) + coalesce(i.received_count, 0) > 0 AND i.last_contact_at IS NOT NULL "
                "THEN ln(least(1::float8, ln((coalesce(i.sent_count, 0) + coalesce(i.received_count, 0) + 1)::float8) / ln(50::float8))) "
                "+ extract(epoch FROM i.last_contact_at)::float8 / 7776000::float8 * ln(2::float8) ELSE -1e15::float8 END")
LIVE_CONTACTS = "contacts c WHERE c.workspace_id = %(ws)s AND c.deleted_at IS NULL"


def relationships_of(owner: str, size: str) -> str:
    """A contact's first page of edges (oldest first), each with its other end, as a connection."""
    node = obj("Relationship", id=gid("Relationship", "e.id"), kind="e.kind", weight=WEIGHT,
               other=obj("Contact", id=gid("Contact", "o.id"), fullName="o.full_name"))
    return (f"(SELECT {obj('RelationshipConnection', edges=agg(obj('RelationshipEdge', node=node), 'e.created_at, e.id'))} "
            f"FROM (SELECT * FROM relationships x WHERE x.workspace_id = %(ws)s AND ((x.source_type = 'Contact' AND x.source_id = {owner}) "
            f"OR (x.target_type = 'Contact' AND x.target_id = {owner})) ORDER BY x.created_at, x.id LIMIT {size}) e "
            f"JOIN contacts o ON o.workspace_id = %(ws)s AND o.id = CASE WHEN e.target_type = 'Contact' AND e.target_id = {owner} "
            f"THEN e.source_id ELSE e.target_id END)")


CONTACT_ROW = dict(id=gid("Contact", "c.id"), fullName="c.full_name", email="c.email", company="c.company",
                   title="c.title", tags="c.tags", updatedAt=dt("c.updated_at"))
BASE_CONTACTS_LIST = data("contacts", obj(
    "ContactConnection",
    edges="coalesce(p.edges, '[]')",
    pageInfo=obj("PageInfo", hasNextPage="p.n > {first}", hasPreviousPage="false",
                 startCursor="p.cursors[1]", endCursor="p.cursors[array_length(p.cursors, 1)]"),
)) + (f" FROM (SELECT count(*) AS n, json_agg({obj('ContactEdge', node=obj('Contact', **CONTACT_ROW))} ORDER BY c.rn) "
      f"FILTER (WHERE c.rn <= {{first}}) AS edges, array_agg({cursor('c.created_at', 'c.id')} ORDER BY c.rn) "
      "FILTER (WHERE c.rn <= {first}) AS cursors "
      "FROM (SELECT c.*, row_number() OVER (ORDER BY c.created_at, c.id) AS rn FROM (SELECT * FROM "
      f"{LIVE_CONTACTS} ORDER BY c.created_at, c.id LIMIT {{first}} + 1) c) c) p")

BASE_NESTED = data("contacts", obj("ContactConnection", edges=agg(obj("ContactEdge", node=obj(
    "Contact", id=gid("Contact", "c.id"), fullName="c.full_name",
    relationships=relationships_of("c.id", "{relationshipsFirst}"))), "c.created_at, c.id"))) + (
    f" FROM (SELECT c.id, c.full_name, c.created_at FROM {LIVE_CONTACTS} ORDER BY c.created_at, c.id LIMIT {{first}}) c")

INTELLIGENCE = (f"(SELECT {obj('ContactIntelligence', sentCount='coalesce(i.sent_count, 0)', receivedCount='coalesce(i.received_count, 0)', lastContactAt=dt('i.last_contact_at'), strength=STRENGTH, health=HEALTH, replyRate=REPLY_RATE)} "
                "FROM (SELECT 1) one LEFT JOIN contact_intelligence i ON i.workspace_id = %(ws)s AND i.contact_id = c.id)")
ACTIVITY = (f"(SELECT {obj('ActivityEventConnection', edges=agg(obj('ActivityEventEdge', node=obj('ActivityEvent', id=gid('ActivityEvent', 'a.id'), type='a.type', occurredAt=dt('a.occurred_at'), summary='a.summary')), 'a.occurred_at DESC, a.id DESC'))} "
            "FROM (SELECT * FROM activity_events WHERE workspace_id = %(ws)s AND contact_id = c.id "
            "ORDER BY occurred_at DESC, id DESC LIMIT {activityFirst}) a)")
LINKED_DOCUMENTS = (f"(SELECT {obj('DocumentConnection', edges=agg(obj('DocumentEdge', node=obj('Document', id=gid('Document', 'd.id'), title='d.title')), 'd.created_at DESC, d.id DESC'))} "
                    "FROM (SELECT d.id, d.title, d.created_at FROM documents d JOIN document_links l ON l.document_id = d.id "
                    "WHERE d.workspace_id = %(ws)s AND d.deleted_at IS NULL AND l.workspace_id = %(ws)s AND l.node_type = 'Contact' "
                    "AND l.node_id = c.id ORDER BY d.created_at DESC, d.id DESC LIMIT {documentsFirst}) d)")
PLAIN_CONTACT = dict(
    id=gid("Contact", "c.id"), fullName="c.full_name", email="c.email", emails="c.emails", phone="c.phone", title="c.title",
    company="c.company", city="c.city", state="c.state", tags="c.tags", contactType="c.contact_type", status="c.status",
    remoteId="c.remote_id", customFields="c.custom_fields", createdAt=dt("c.created_at"), updatedAt=dt("c.updated_at"),
    deletedAt=dt("c.deleted_at"),
)
BASE_DETAIL = data("node", f"(SELECT {obj('Contact', **PLAIN_CONTACT, intelligence=INTELLIGENCE, activity=ACTIVITY, relationships=relationships_of('c.id', '{relationshipsFirst}'), documents=LINKED_DOCUMENTS)} "
                           f"FROM contacts c WHERE c.workspace_id = %(ws)s AND c.id = {uuid_of('id')})")

# Hand-written for this page: one condition on a text-mirrored field (its name and value from the
# variables), ordered by the amount, descending, ties by record as the index orders them.
BASE_RECORDS = (
    f"WITH ot AS (SELECT id FROM object_types WHERE workspace_id = %(ws)s AND id = {uuid_of('objectTypeId')}), "
    "matching AS (SELECT r.id, r.name, r.fields, r.updated_at, o.num, o.record_id FROM records r "
    "JOIN record_values o ON o.record_id = r.id AND o.object_type_id = (SELECT id FROM ot) AND o.field = 'amount' "
    "WHERE r.workspace_id = %(ws)s AND r.object_type_id = (SELECT id FROM ot) AND r.deleted_at IS NULL AND EXISTS ("
    "SELECT FROM record_values v WHERE v.record_id = r.id AND v.object_type_id = (SELECT id FROM ot) "
    "AND v.field = %(field)s AND v.txt = %(eq)s)) "
) + data("records", obj(
    "RecordConnection",
    edges=f"(SELECT {agg(obj('RecordEdge', node=obj('Record', id=gid('Record', 'p.id'), name='p.name', fields='p.fields', updatedAt=dt('p.updated_at'))), 'p.num DESC, p.record_id DESC')} "
          "FROM (SELECT * FROM matching ORDER BY num DESC, record_id DESC LIMIT {first}) p)",
    totalCount="(SELECT count(*) FROM matching)",
))

VERSION = obj("DocumentVersion", version="x.version", title="x.title", createdAt=dt("x.created_at"))
BASE_DOCUMENTS = data("documents", obj("DocumentConnection", edges=agg(obj("DocumentEdge", node=obj(
    "Document", id=gid("Document", "d.id"), title="d.title", status="d.status", version="d.version", updatedAt=dt("d.updated_at"),
    versions=obj("DocumentVersionConnection", edges="v.edges"))), "d.created_at DESC, d.id DESC"))) + (
    " FROM (SELECT id, title, status, version, created_at, updated_at FROM documents WHERE workspace_id = %(ws)s "
    "AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT {first}) d "
    f"CROSS JOIN LATERAL (SELECT {agg(obj('DocumentVersionEdge', node=VERSION), 'x.version DESC')} AS edges "
    "FROM (SELECT version, title, created_at FROM document_versions WHERE workspace_id = %(ws)s AND document_id = d.id "
    "ORDER BY version DESC LIMIT {versionsFirst}) x) v")

BASE_NODE = data("node", f"(SELECT {obj('Contact', id=gid('Contact', 'c.id'), fullName='c.full_name', email='c.email')} "
                         f"FROM contacts c WHERE c.workspace_id = %(ws)s AND c.id = {uuid_of('id')})")

BASE_BY_STRENGTH = data("contacts", obj("ContactConnection", edges=agg(obj("ContactEdge", node=obj(
    "Contact", id=gid("Contact", "c.id"), fullName="c.full_name", email="c.email", company="c.company",
    intelligence=obj("ContactIntelligence", strength=STRENGTH, health=HEALTH, lastContactAt=dt("i.last_contact_at")))),
    "c.key DESC, c.id DESC"))) + (
    f" FROM (SELECT c.id, c.full_name, c.email, c.company, {STRENGTH_KEY} AS key FROM contacts c "
    "LEFT JOIN contact_intelligence i ON i.contact_id = c.id WHERE c.workspace_id = %(ws)s AND c.deleted_at IS NULL "
    "ORDER BY key DESC, c.id DESC LIMIT {first}) c LEFT JOIN contact_intelligence i ON i.contact_id = c.id")

# Hand-written for a query of plain words over the same candidates the app ranks (migration 0009's
# functions: at most 500 per type, in index order), merged as search.py merges them (score, then
# type name, then id; a document by its best chunk, ties by chunk id). A rank is a real, which
# psycopg reads as the float of its shortest text, as json_build_object writes it.
HIT_NODE = ("CASE t.type_name "
            f"WHEN 'Contact' THEN (SELECT {obj('Contact', id=gid('Contact', 'c.id'), fullName='c.full_name')} FROM contacts c WHERE c.id = t.id) "
            f"WHEN 'Record' THEN (SELECT {obj('Record', id=gid('Record', 'r.id'), name='r.name')} FROM records r WHERE r.id = t.id) "
            f"ELSE (SELECT {obj('Document', id=gid('Document', 'd.id'), title='d.title')} FROM documents d WHERE d.id = t.id) END")
CAP = 500
BASE_SEARCH = (
    "WITH q AS (SELECT plainto_tsquery('english', %(query)s) AS q), hits AS ("
    f"(SELECT 'Contact' AS type_name, m.contact_id AS id, m.rank FROM q, ctxgraph_contact_candidates(q.q, {CAP}) m "
    "ORDER BY m.rank DESC, m.contact_id LIMIT {first}) "
    f"UNION ALL (SELECT 'Record', m.record_id, m.rank FROM q, ctxgraph_record_candidates(q.q, {CAP}) m "
    "ORDER BY m.rank DESC, m.record_id LIMIT {first}) "
    "UNION ALL (SELECT 'Document', b.document_id, b.rank FROM (SELECT DISTINCT ON (m.document_id) m.document_id, m.rank "
    f"FROM q, ctxgraph_chunk_candidates(q.q, {CAP}) m ORDER BY m.document_id, m.rank DESC, m.chunk_id) b "
    "ORDER BY b.rank DESC, b.document_id LIMIT {first})), "
    "top AS (SELECT * FROM hits ORDER BY rank DESC, type_name, id LIMIT {first}) "
) + data("search", agg(obj("SearchHit", score="t.rank", node=HIT_NODE), "t.rank DESC, t.type_name, t.id")) + " FROM top t"


def _condition(variables: dict[str, Any]) -> dict[str, Any]:
    (condition,) = variables["filter"]["fields"]
    return {"objectTypeId": variables["objectTypeId"], "field": condition["field"], "eq": condition["eq"]}


BASELINES = {
    "/1": Baseline(BASE_CONTACTS_LIST, ("first",)),
    "/2": Baseline(BASE_NESTED, ("first", "relationshipsFirst")),
    "/3": Baseline(BASE_DETAIL, ("activityFirst", "relationshipsFirst", "documentsFirst"), lambda v: {"id": v["id"]}),
    "/4": Baseline(BASE_RECORDS, ("first",), _condition),
    "/5": Baseline(BASE_DOCUMENTS, ("first", "versionsFirst")),
    "/6": Baseline(BASE_NODE, (), lambda v: {"id": v["id"]}),
    "/7": Baseline(BASE_BY_STRENGTH, ("first",)),
    "/8": Baseline(BASE_SEARCH, ("first",), lambda v: {"query": v["query"]}),
}


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Fixture:
    """The ids the pages' variables name."""

    hub: uuid.UUID
    deals: uuid.UUID


def companies() -> list[str]:
    return [f"Harbor Freight {i}" if i % 10 == 0 else f"Company {i}" for i in range(500)]


def _copy(cur: psycopg.Cursor[Any], table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _events(ws: uuid.UUID, graph: Graph, anchor: float) -> list[tuple[Any, ...]]:
    """EVENTS activity events: HUB_EVENTS for the hub, the rest over the first 7,000 contacts;
    messages in three threads per contact. Received messages stay under 32 per contact, so no
    replyRate (rounded to 4 decimals) is an exact half, which Python and PostgreSQL round apart."""
    from app.services.activity import event_id

    rng = random.Random(11)
    kinds = ["message.sent"] * 7 + ["message.received"] * 7 + ["calendar_event.created", "call.logged"] * 2 + ["note.added"] * 2
    owners = [0] * HUB_EVENTS + [rng.randrange(1, 7_000) for _ in range(EVENTS - HUB_EVENTS)]
    received: dict[int, int] = {}
    rows = []
    for k, i in enumerate(owners):
        kind = rng.choice(kinds)
        if kind == "message.received":
            received[i] = received.get(i, 0) + 1
            assert received[i] < 32, "a contact with 32 received messages could have an exactly halfway replyRate"
        contact = graph.contacts[i]
        thread = f"thread-{i}-{rng.randrange(3)}" if kind.startswith("message.") else None
        at = datetime.fromtimestamp(anchor - rng.uniform(0, 200 * 86400), UTC)
        rows.append((event_id(ws, contact, kind, f"r{k}"), ws, contact, kind, f"r{k}", at, f"{kind} {k}",
                     Jsonb({"threadId": thread} if thread else {}), thread))
    return rows


def _records(ws: uuid.UUID, deal_type: Any, ticket_type: Any, base: float) -> tuple[list[tuple[Any, ...]], ...]:
    """RECORDS records (the deals, then TICKETS tickets), their versions and mirrored values, as
    the app's own helpers compute them (object_types.value_rows and search_text)."""
    from app.services.object_types import search_text, value_rows

    rng = random.Random(13)
    records, versions, values = [], [], []
    for n in range(RECORDS):
        if n < RECORDS - TICKETS:
            ot, name = deal_type, f"Harbor expansion {n}" if n % 500 == 0 else f"Deal {n}"
            fields: dict[str, Any] = {"stage": rng.choice(("lead", "qualified", "won", "lost")), "amount": rng.randrange(1, 400) * 500}
        else:
            ot, name = ticket_type, f"Ticket {n}"
            fields = {"priority": rng.randrange(1, 5), "subject": rng.choice(("Login fails", "Invoice question", "Export is slow", "Harbor crane is down"))}
        record_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        created = datetime.fromtimestamp(base + n * 120, UTC)
        updated = datetime.fromtimestamp(base + n * 120 + rng.uniform(0, 86400), UTC)
        records.append((record_id, ws, ot.id, name, Jsonb(fields), 1, search_text(ot, fields), created, updated))
        versions.append((uuid.UUID(int=rng.getrandbits(128), version=4), ws, record_id, 1, "created", name, Jsonb(fields),
                         sorted(fields), created))
        values += [(v["record_id"], ws, v["object_type_id"], v["field"], v["num"], v["at"], v["txt"])
                   for v in value_rows(ws, ot, record_id, fields)]
    return records, versions, values


def _documents(ws: uuid.UUID, graph: Graph, base: float) -> tuple[list[tuple[Any, ...]], ...]:
    """DOCUMENTS documents, a tenth with 3 versions and a further fifth with 2, two chunks each
    (the title heading the first), each linked to a contact and the first HUB_DOCUMENTS to the hub too."""
    rng = random.Random(17)
    vocabulary = ("quarterly", "pipeline", "renewal", "contract", "pricing", "roadmap", "onboarding", "support", "meeting",
                  "proposal", "budget", "forecast", "integration", "security", "review")
    documents, versions, chunks, links = [], [], [], set()
    for n in range(DOCUMENTS):
        document_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        title = f"Harbor report {n}" if n % 4 == 0 else f"Document {n}"
        words = [rng.choice(vocabulary) for _ in range(120)] + ([WORD] * rng.randrange(1, 4) if n % 3 == 0 else [])
        rng.shuffle(words)
        content = " ".join(words)
        version = 3 if n % 10 == 0 else 2 if n % 5 == 1 else 1
        created = base + n * 600
        documents.append((document_id, ws, title, "text/plain", content, hashlib.sha256(content.encode()).hexdigest(), "READY",
                          version, datetime.fromtimestamp(created, UTC),
                          datetime.fromtimestamp(created + (version - 1) * 3600 + rng.random(), UTC)))
        for v in range(1, version + 1):
            text = content if v == version else f"{content} (draft {v})"
            versions.append((uuid.UUID(int=rng.getrandbits(128), version=4), ws, document_id, v,
                             title if v == version else f"{title} (draft {v})", text, hashlib.sha256(text.encode()).hexdigest(),
                             datetime.fromtimestamp(created + (v - 1) * 3600, UTC)))
        half = len(words) // 2
        for ordinal, (heading, part) in enumerate(((title, words[:half]), ("", words[half:]))):
            chunks.append((uuid.UUID(int=rng.getrandbits(128), version=4), ws, document_id, ordinal, " ".join(part), heading))
        links.add((ws, document_id, "Contact", graph.contacts[(n * 37) % CONTACTS]))
        if n < HUB_DOCUMENTS:
            links.add((ws, document_id, "Contact", graph.contacts[0]))
    return documents, versions, chunks, sorted(links, key=str)


async def _rebuild_intelligence(settings: Any, ws: uuid.UUID, contact_ids: list[uuid.UUID]) -> None:
    """Each contact's intelligence facts from its events, by the app's own rebuild (in slices,
    so that no statement carries more parameters than PostgreSQL takes)."""
    from app.db.engine import Database
    from app.services.activity import rebuild_facts

    db = Database(settings)
    try:
        for start in range(0, len(contact_ids), 500):
            async with db.system() as s, s.begin():
                await rebuild_facts(s, ws, contact_ids[start:start + 500])
    finally:
        await db.dispose()


async def seed(settings: Any, url: str, workspace_id: str) -> Fixture:
    from app.db.models import ObjectType
    from app.services.object_types import FieldDef

    ws = uuid.UUID(workspace_id)
    graph = seed_graph(url, workspace_id, companies())
    anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    deal_type = ObjectType(id=uuid.UUID(int=1, version=4), name="deal", display_name="Deal", field_definitions=[
        FieldDef("stage", "SELECT", "Stage", options=("lead", "qualified", "won", "lost")).as_json(),
        FieldDef("amount", "FLOAT", "Amount").as_json()])
    ticket_type = ObjectType(id=uuid.UUID(int=2, version=4), name="ticket", display_name="Ticket", field_definitions=[
        FieldDef("priority", "INT", "Priority").as_json(), FieldDef("subject", "STRING", "Subject").as_json()])
    records, record_versions, values = _records(ws, deal_type, ticket_type, graph.base)
    documents, document_versions, chunks, links = _documents(ws, graph, graph.base)
    events = _events(ws, graph, anchor)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE contacts SET full_name = full_name || ' Harbor' WHERE workspace_id = %s AND full_name ~ '000$'", (ws,))
        _copy(cur, "activity_events", "id, workspace_id, contact_id, type, resource_id, occurred_at, summary, metadata, thread_id", events)
        for ot in (deal_type, ticket_type):
            cur.execute("INSERT INTO object_types (id, workspace_id, name, display_name, field_definitions) VALUES (%s, %s, %s, %s, %s)",
                        (ot.id, ws, ot.name, ot.display_name, Jsonb(ot.field_definitions)))
        _copy(cur, "records", "id, workspace_id, object_type_id, name, fields, version, search_text, created_at, updated_at", records)
        _copy(cur, "record_versions", "id, workspace_id, record_id, version, action, name, fields, changed_fields, created_at",
              record_versions)
        _copy(cur, "record_values", "record_id, workspace_id, object_type_id, field, num, at, txt", values)
        _copy(cur, "documents", "id, workspace_id, title, content_type, content, content_hash, status, version, created_at, updated_at",
              documents)
        _copy(cur, "document_versions", "id, workspace_id, document_id, version, title, content, content_hash, created_at",
              document_versions)
        _copy(cur, "document_chunks", "id, workspace_id, document_id, ordinal, content, heading", chunks)
        _copy(cur, "document_links", "workspace_id, document_id, node_type, node_id", links)
    await _rebuild_intelligence(settings, ws, sorted({row[2] for row in events}))
    analyze(url)
    return Fixture(hub=graph.contacts[0], deals=deal_type.id)


# ---------------------------------------------------------------- the pages and their variables


@dataclass(frozen=True)
class Page:
    number: int
    name: str
    query: str
    operation: str
    variables: dict[str, Any]
    postgraphile: float | None

    @property
    def body(self) -> dict[str, Any]:
        return {"operationName": self.operation, "query": self.query, "variables": self.variables}


def pages(f: Fixture) -> list[Page]:
    hub = global_id("Contact", f.hub)
    return [
        Page(1, "contacts list", CONTACTS_LIST, "ContactsList", {"first": 50}, 920),
        Page(2, "nested", NESTED, "NestedContacts", {"first": 50, "relationshipsFirst": 10}, 98.9),
        Page(3, "contact detail", DETAIL, "ContactDetail",
             {"id": hub, "activityFirst": 20, "relationshipsFirst": 10, "documentsFirst": 5}, 406),
        Page(4, "records", RECORDS_PAGE, "RecordsOfType", {
            "objectTypeId": global_id("ObjectType", f.deals), "filter": {"fields": [{"field": "stage", "eq": "won"}]},
            "orderBy": [{"customField": "amount", "direction": "DESC"}], "first": 50}, 251),
        Page(5, "documents", DOCUMENTS_PAGE, "DocumentsList", {"first": 50, "versionsFirst": 1}, 812),
        Page(6, "node", NODE, "ContactNode", {"id": hub}, 1594),
        Page(7, "by strength", BY_STRENGTH, "ContactsByStrength",
             {"first": 50, "orderBy": [{"field": "STRENGTH", "direction": "DESC"}]}, None),
        Page(8, "search", SEARCH, "Search", {"query": WORD, "first": 20}, None),
    ]


# ---------------------------------------------------------------- checks and counters


def difference(ours: Any, theirs: Any, path: str = "data") -> str | None:
    """Where two parsed JSON values first differ, or None."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours or key not in theirs:
                return f"{path}.{key}: only in {'ours' if key in ours else 'the baseline'}"
            found = difference(ours[key], theirs[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{path}: {len(ours)} items against {len(theirs)}"
        return next((d for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if (d := difference(a, b, f"{path}[{i}]"))), None)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (ours, theirs))  # 0.0 and 0 alike
    same = ours == theirs and (numbers or type(ours) is type(theirs))
    return None if same else f"{path}: ours {ours!r}, the baseline's {theirs!r}"


def same_answers(api: str, base: str, headers: dict[str, str], page: Page) -> None:
    """Our data and the baseline's must be equal; raises with the first difference otherwise.
    Asked up to three times: figures that depend on the time (strength) may tick between the two."""
    for _ in range(3):
        ours = httpx.post(api, json=page.body, headers=headers, timeout=60).json()
        theirs = httpx.post(base, json=page.body, timeout=60).json()
        if "errors" in ours:
            raise SystemExit(f"page {page.number} ({page.name}): our server answered errors: {ours['errors']}")
        found = difference(ours.get("data"), theirs.get("data"))
        if found is None:
            return
    raise SystemExit(f"page {page.number} ({page.name}): our answer and the baseline's differ at {found}")


FALLBACKS = re.compile(r"^ctxgraph_plan_fallbacks_total\{([^}]*)\}\s+(\S+)", re.M)


def fallbacks(metrics_url: str, token: str) -> dict[str, float] | None:
    """ctxgraph_plan_fallbacks_total by reason, or None when the app has no such counter."""
    text = httpx.get(metrics_url, headers={"authorization": f"Bearer {token}"}, timeout=10).text
    if not re.search(r"^# TYPE ctxgraph_plan_fallbacks(_total)? counter", text, re.M):
        return None
    out: dict[str, float] = {}
    for labels, value in FALLBACKS.findall(text):
        reason = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)).get("reason", labels)
        out[reason] = out.get(reason, 0.0) + float(value)
    return out


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    server_ms: float
    postgres_ms: float


@contextlib.contextmanager
def measured(pid: int, admin_url: str, url: str, into: dict[str, float]) -> Iterator[None]:
    """CPU of the server process `pid` and of the database's backends while the block runs."""
    server, backends = cpu_ms(pid), backends_cpu_ms(admin_url, url)
    yield
    into["server"] = cpu_ms(pid) - server
    into["postgres"] = cpu_delta(backends, backends_cpu_ms(admin_url, url))


def run(target: str, body: dict[str, Any], headers: dict[str, str], pid: int, admin_url: str, url: str,
        seconds: float) -> Run:
    cpu: dict[str, float] = {}
    r = load_wrk(target, body, headers, seconds, around=lambda: measured(pid, admin_url, url, cpu))
    return Run(r["rps"], r["p50"], r["p99"], cpu["server"] / r["n"], cpu["postgres"] / r["n"])


def median_run(runs: list[Run]) -> Run:
    """The round of median throughput (its latency and CPU with it)."""
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def count_moves(so_far: dict[str, float] | None, before: dict[str, float] | None,
                after: dict[str, float] | None) -> dict[str, float] | None:
    """`so_far` plus how far each reason's count moved from `before` to `after` (None: no counter)."""
    if so_far is None or before is None or after is None:
        return None
    return {reason: so_far.get(reason, 0.0) + value - before.get(reason, 0.0) for reason, value in after.items()}


def planned(moved: dict[str, float] | None) -> str:
    if moved is None:
        return "unknown"
    reasons = {k: v for k, v in moved.items() if v > 0}
    return "planned" if not reasons else ", ".join(f"{k} x{v:.0f}" for k, v in sorted(reasons.items()))


# ---------------------------------------------------------------- main


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (3)")
    parser.add_argument("--only", type=lambda s: {int(n) for n in s.split(",")}, default=None, help="pages to run, e.g. 1,3")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    opts = parser.parse_args()
    if opts.rounds < 1 or opts.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    if opts.only is not None and not opts.only <= set(range(1, 9)):
        parser.error("--only takes page numbers 1 to 8")

    with database(opts.admin_url) as url, tempfile.TemporaryDirectory() as home:
        with psycopg.connect(opts.admin_url, autocommit=True) as conn:
            # All of a statement's CPU then stays in the backend whose /proc figures are read.
            conn.execute(f'ALTER DATABASE "{url.rpartition("/")[2]}" SET max_parallel_workers_per_gather = 0')
        settings = migrated_settings(url, opts.redis_url, home)
        token = secrets.token_hex(16)
        env = api_env(url, opts.redis_url, home, CTXGRAPH_METRICS_TOKEN=token)
        port, base_port = free_port(), free_port()
        api = serve_api(env, port)
        baseline = None
        try:
            access, ws_gid = sign_up(f"http://127.0.0.1:{port}")
            workspace_id = workspace_uuid(ws_gid)
            started = time.perf_counter()
            fixture = await seed(settings, url, workspace_id)
            print(f"seeded {CONTACTS:,} contacts, 50,000 relationships, {EVENTS:,} events, {RECORDS:,} records, "
                  f"{DOCUMENTS:,} documents in {time.perf_counter() - started:.1f} s")
            selected = [p for p in pages(fixture) if opts.only is None or p.number in opts.only]
            headers = {"authorization": f"Bearer {access}", "x-workspace-id": ws_gid}
            statements = await statements_per_request(settings, headers, {str(p.number): p.body for p in selected})
            baseline = serve_baseline(url, workspace_id, "frontend:BASELINES", env, base_port)
            api_url, metrics_url = f"http://127.0.0.1:{port}/graphql", f"http://127.0.0.1:{port}/metrics"
            ours: dict[int, list[Run]] = {p.number: [] for p in selected}
            theirs: dict[int, list[Run]] = {p.number: [] for p in selected}
            moved: dict[int, dict[str, float] | None] = {}
            for round_ in range(opts.rounds):
                for p in selected:
                    base_url = f"http://127.0.0.1:{base_port}/{p.number}"
                    before = fallbacks(metrics_url, token)
                    if round_ == 0:
                        same_answers(api_url, base_url, headers, p)
                    ours[p.number].append(run(api_url, p.body, headers, api.pid, opts.admin_url, url, opts.seconds))
                    moved[p.number] = count_moves(moved.get(p.number, {}), before, fallbacks(metrics_url, token))
                    theirs[p.number].append(run(base_url, p.body, {}, baseline.pid, opts.admin_url, url, opts.seconds))
                print(f"round {round_ + 1} of {opts.rounds} done")
        finally:
            stop(api)
            if baseline is not None:
                stop(baseline)

    report(selected, ours, theirs, statements, moved, opts)


def report(selected: list[Page], ours: dict[int, list[Run]], theirs: dict[int, list[Run]], statements: dict[str, int],
           moved: dict[int, dict[str, float] | None], opts: Any) -> None:
    print(f"\nconcurrency {CONCURRENCY} with wrk, {opts.seconds:.0f} s per run, {opts.rounds} interleaved round(s), median "
          "round shown; one server process each, same machine and database. CPU: ms per request, server + PostgreSQL.\n")
    head = (f"{'page':18} {'ours/s':>7} {'base/s':>7} {'ratio':>6} {'ours p50/p99':>15} {'base p50/p99':>15} "
            f"{'ours CPU':>13} {'base CPU':>13} {'SQL':>4} {'PostGraphile':>12} {'1.5x':>6}  plan")
    print(head)
    print("-" * len(head))
    for p in selected:
        o, b = median_run(ours[p.number]), median_run(theirs[p.number])
        reference = f"{p.postgraphile:12,g}" if p.postgraphile else f"{'-':>12}"
        target = f"{p.postgraphile * 1.5:6,.0f}" if p.postgraphile else f"{'-':>6}"
        print(f"{p.number} {p.name:16} {o.rps:7,.0f} {b.rps:7,.0f} {o.rps / b.rps:5.2f}x {o.p50:7.1f}/{o.p99:<7.1f} "
              f"{b.p50:7.1f}/{b.p99:<7.1f} {o.server_ms:6.2f}+{o.postgres_ms:<6.2f} {b.server_ms:6.2f}+{b.postgres_ms:<6.2f} "
              f"{statements[str(p.number)]:4d} {reference} {target}  {planned(moved.get(p.number))}")
    print("\nSQL: statements of one warm request of ours, counted in process (the baseline: 1). plan: \"planned\" when\n"
          "ctxgraph_plan_fallbacks_total did not move while the page ran, else its reasons; \"unknown\" without the counter.\n"
          "PostGraphile: the issue's figures (req/s) for reference; 1.5x: the target.")


if __name__ == "__main__":
    asyncio.run(main())
