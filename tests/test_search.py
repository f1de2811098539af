"""Ranked full-text search across contacts, records and documents, through the GraphQL API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from app.config import Settings
from app.services import ids
from app.services.search import CANDIDATES_PER_TYPE
from tests.conftest import Account, Api
from tests.test_documents import create as create_document
from tests.test_records import make, make_type

SEARCH = """query($q: String!, $types: [SearchableType!], $first: Int) {
  search(query: $q, types: $types, first: $first) { score snippet node { __typename id
    ... on Document { title } ... on Record { name } ... on Contact { fullName } } }
}"""


async def search(api: Api, who: dict[str, Any], q: str, types: list[str] | None = None, first: int | None = None) -> list[dict[str, Any]]:
    return (await api.data(SEARCH, {"q": q, "types": types, "first": first}, **who))["search"]


def titles(hits: list[dict[str, Any]]) -> list[str]:
    return [h["node"].get("title") or h["node"].get("name") or h["node"].get("fullName") for h in hits]


async def corpus(api: Api, who: Account) -> dict[str, str]:
    docs = {
        "guide": ("Kafka consumer guide", "How a Kafka consumer commits offsets. Kafka consumers in a group share "
                  "partitions; the consumer rebalances when a consumer joins."),
        "mention": ("Team offsite notes", "Lunch at noon. Someone mentioned Kafka once. Then we walked by the river."),
        "fox": ("Fox", "The quick brown fox jumps over the lazy dog."),
        "xof": ("Reversed", "The brown quick fox did not jump at all."),
        "long": ("Long report", ("Filler sentence about nothing in particular. " * 60) + "A consumer appears deep inside. "
                 + ("More filler text to pad the report. " * 60)),
    }
    out = {}
    for key, (title, content) in docs.items():
        out[key] = (await create_document(api, who, title=title, content=content))["document"]["id"]
    return out


async def test_ranking_phrase_prefix_and_snippets(api: Api, alice: Account) -> None:
    ids = await corpus(api, alice)
    hits = await search(api, alice.auth, "kafka")
    assert titles(hits) == ["Kafka consumer guide", "Team offsite notes"]
    assert hits[0]["score"] > hits[1]["score"] > 0
    assert "<mark>Kafka</mark>" in hits[0]["snippet"]
    # all words must match; stemming: "consumers" finds "consumer"
    assert titles(await search(api, alice.auth, "consumers kafka")) == ["Kafka consumer guide"]
    # a phrase matches in order only
    assert titles(await search(api, alice.auth, '"quick brown fox"')) == ["Fox"]
    assert set(titles(await search(api, alice.auth, "quick brown fox"))) == {"Fox", "Reversed"}
    # prefixes
    assert set(titles(await search(api, alice.auth, "rebal*"))) == {"Kafka consumer guide"}
    assert set(titles(await search(api, alice.auth, "kaf* rebal*"))) == {"Kafka consumer guide"}
    # the snippet of a long document comes from the chunk that matched
    long_hit = next(h for h in await search(api, alice.auth, "consumer") if h["node"]["id"] == ids["long"])
    assert "<mark>consumer</mark>" in long_hit["snippet"] and len(long_hit["snippet"]) < 400
    assert len(await search(api, alice.auth, "the", first=5)) == 0  # stop words alone match nothing
    assert len(await search(api, alice.auth, "consumer", first=1)) == 1
    # documents(search:) uses the same index
    listed = await api.data('{ documents(search: "kafka", orderBy: [{field: TITLE, direction: ASC}]) { edges { node { title } } } }', **alice.auth)
    assert [e["node"]["title"] for e in listed["documents"]["edges"]] == ["Kafka consumer guide", "Team offsite notes"]
    body = await api(SEARCH, {"q": "  "}, **alice.auth)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_types_liveness_isolation_and_scopes(api: Api, alice: Account, bob: Account) -> None:
    type_id = await make_type(api, alice, "account", [{"name": "title", "fieldType": "STRING"}, {"name": "notes", "fieldType": "TEXT"}])
    record = await make(api, alice, type_id, {"title": "Zebra Corp", "notes": "Striped zebra logistics"}, name="Zebra Corp")
    await api.data('mutation { createContact(input: {fullName: "Zelda Zebra", email: "zelda@zebra.example"}) { contact { id } } }', **alice.auth)
    doc = (await create_document(api, alice, title="Zebra facts", content="Every zebra has unique stripes"))["document"]
    assert set(t["node"]["__typename"] for t in await search(api, alice.auth, "zebra")) == {"Record", "Document", "Contact"}
    assert titles(await search(api, alice.auth, "zebra", ["RECORD"])) == ["Zebra Corp"]
    assert titles(await search(api, alice.auth, "zebra", ["CONTACT"])) == ["Zelda Zebra"]
    # soft-deleted rows drop out
    await api.data("mutation($id: ID!) { deleteRecord(id: $id) { record { id } } }", {"id": record["id"]}, **alice.auth)
    await api.data("mutation($id: ID!) { deleteDocument(id: $id) { document { id } } }", {"id": doc["id"]}, **alice.auth)
    assert titles(await search(api, alice.auth, "zebra")) == ["Zelda Zebra"]
    # another workspace sees nothing
    assert await search(api, bob.auth, "zebra") == []
    # only the types the caller may read
    key = (await api.data('mutation { createApiKey(input: {name: "d", scopes: ["documents:read", "records:read"]}) { secret } }',
                          **alice.auth))["createApiKey"]["secret"]
    await create_document(api, alice, title="Zebra again", content="Another zebra text")
    assert titles(await search(api, {"api_key": key}, "zebra")) == ["Zebra again"]
    body = await api(SEARCH, {"q": "zebra", "types": ["CONTACT"]}, api_key=key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_snippets_are_escaped_text_with_only_the_servers_marks(api: Api, alice: Account) -> None:
    hostile = '<img src=x onerror="alert(1)"> quokka <svg onload=alert(2)> & \ue000fake\ue001 <mark>quokka</mark>'
    await create_document(api, alice, title="Quokka notes", content=hostile)
    type_id = await make_type(api, alice, "quokka_kind", [{"name": "notes", "fieldType": "TEXT"}])
    await make(api, alice, type_id, {"notes": hostile}, name="<b>Quokka</b> record")
    await api.data('mutation($n: String!) { createContact(input: {fullName: $n}) { contact { id } } }',
                   {"n": '<script>alert(3)</script> Quokka'}, **alice.auth)
    hits = await search(api, alice.auth, "quokka")
    assert {h["node"]["__typename"] for h in hits} == {"Document", "Record", "Contact"}
    for hit in hits:
        snippet = hit["snippet"]
        assert "<mark>quokka</mark>" in snippet.lower(), snippet
        markup = snippet.replace("<mark>", "").replace("</mark>", "")
        assert "<" not in markup and ">" not in markup, snippet  # no tag but the server's marks
        assert "\ue000" not in snippet and "\ue001" not in snippet
    document = next(h["snippet"] for h in hits if h["node"]["__typename"] == "Document")
    assert "&lt;svg onload=alert(2)&gt; &amp;" in document  # stored markup is shown as text
    assert "fake" in document and "<mark>fake" not in document  # the marks are the server's alone


@contextmanager
def as_app_role(settings: Settings, account: Account, *first: str) -> Iterator[psycopg.Connection[Any]]:
    """A transaction as the app role in `account`'s workspace, set the way a tenant session sets
    it, after the statements `first` as the owner."""
    with psycopg.connect(settings.database_url or "") as conn, conn.transaction():
        for statement in first:
            conn.execute(statement)
        conn.execute("select set_config('role', %s, true), set_config('app.workspace_id', %s, true)",
                     (settings.app_role, str(ids.decode(account.workspace_id)[1])))
        yield conn


async def test_a_common_word_ranks_the_best_of_its_capped_candidates(api: Api, alice: Account, settings: Settings) -> None:
    # More contacts match than are ranked; some of them have the word in their name too, and
    # enough of them (first + the rows left out) that any capped choice holds `first` of them.
    first, left_out = 10, 100
    named = first + left_out
    workspace = ids.decode(alice.workspace_id)[1]
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute(
            "insert into contacts (id, workspace_id, full_name, title) "
            "select gen_random_uuid(), %s, case when i <= %s then 'Wally Walrus' else 'Pat Smith' end, 'Walrus trainer' "
            "from generate_series(1, %s) i", (workspace, named, CANDIDATES_PER_TYPE + left_out))
    with as_app_role(settings, alice) as conn:
        ranked = conn.execute("select count(*) from ctxgraph_contact_candidates(plainto_tsquery('english', 'walrus'), %s)",
                              (CANDIDATES_PER_TYPE,)).fetchone()
    assert ranked == (CANDIDATES_PER_TYPE,)

    hits = await search(api, alice.auth, "walrus", first=first)
    assert titles(hits) == ["Wally Walrus"] * first  # the best of the candidates, whichever they were
    assert len({h["score"] for h in hits}) == 1
    uuids = [ids.decode(h["node"]["id"])[1] for h in hits]
    assert uuids == sorted(uuids)  # ties by id
    assert await search(api, alice.auth, "walrus", first=first) == hits

    page = await search(api, alice.auth, "walrus", first=100)
    assert len(page) == 100
    keys = [(-h["score"], ids.decode(h["node"]["id"])[1]) for h in page]
    assert keys == sorted(keys)


async def test_the_app_role_matches_every_type_through_an_index(api: Api, alice: Account, settings: Settings) -> None:
    type_id = await make_type(api, alice, "narwhal_kind", [{"name": "notes", "fieldType": "TEXT"}])
    await make(api, alice, type_id, {"notes": "narwhal sightings"}, name="Narwhal record")
    await create_document(api, alice, title="Narwhal notes", content="A narwhal was seen.")
    await api.data('mutation { createContact(input: {fullName: "Nora Narwhal"}) { contact { id } } }', **alice.auth)
    plans: list[str] = []
    # auto_explain shows the plans inside the SECURITY DEFINER functions, which EXPLAIN does not
    explain_all = ("load 'auto_explain'", "set local auto_explain.log_min_duration = 0",
                   "set local auto_explain.log_nested_statements = on", "set local client_min_messages = log")
    with as_app_role(settings, alice, *explain_all) as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for function in ("contact", "record", "chunk"):
            found = conn.execute(f"select count(*) from ctxgraph_{function}_candidates(plainto_tsquery('english', 'narwhal'), 1000)")
            assert found.fetchone() == (1,), function
    inside = [p for p in plans if "FROM contacts c" in p or "FROM records r" in p or "FROM document_chunks c" in p]
    assert len(inside) == 3, plans
    for plan in inside:  # the word's GIN index or the workspace's btree, as the estimates say; never a scan
        assert "Index Scan" in plan and "Seq Scan" not in plan, plan
