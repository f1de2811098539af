"""Property-based fuzzing of every mutation and every query argument (filters included).

The operations come from the schema's introspection, so a new mutation or filter is fuzzed
without a line here. Values are built from each argument's input type: mostly well-formed, with
ids of the workspace's real nodes and names of its real fields so that the services' rules are
reached, and hostile where it counts (NUL, lone surrogates, huge and exotic strings, markup,
numbers at every boundary, wrong types, missing and unknown fields). Each example is sent as a
signed-up owner of a seeded workspace. Properties: no response is a 5xx or carries an error
without a code or with INTERNAL_SERVER_ERROR; a refused mutation (GraphQL errors or userErrors)
changed nothing, compared by a fingerprint of every row of the workspace (read as the tables'
owner, past row-level security) and of the accounts.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    Undefined,
    build_client_schema,
    get_named_type,
    introspection_from_schema,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.config import Settings
from schema import schema as app_schema
from tests.conftest import Account, Api, sign_up

SCHEMA = build_client_schema(introspection_from_schema(app_schema._schema))
assert SCHEMA.mutation_type is not None
MUTATIONS = dict(SCHEMA.mutation_type.fields)
QUERIES = {name: f for name, f in SCHEMA.query_type.fields.items() if f.args}  # type: ignore[union-attr]

FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, print_blob=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------- hostile values

HOSTILE_STRINGS = [
    "", " ", "   \t\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "\x1b[31m", "\u202eevil", "\ufeff", "𝕏🚀👩‍👩‍👧",
    "ß" * 70, "x" * 64, "x" * 501, "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
    "'; drop table contacts; --", "%", "_", "\\", "%_\\%", "../../etc/passwd", "null", "undefined", "NaN", "Infinity",
    "-Infinity", "-0", "1e308", "1e400", "2147483648", "9223372036854775808", "{}", "[]", "\"", "\r\n",
]
REALISTIC_STRINGS = [
    "Ada Lovelace", "ada@example.com", "ADA@Example.com ", "not-an-email", "https://example.com/a", "javascript:alert(1)",
    "note.added", "message.sent", "meeting.held", "knows", "works_with", "introduced_by", "imap-acme", "crm_eu",
    "ticket", "openedAt", "amountUsd", "title", "status", "open", "closed", "bug", "contacts:read", "contacts:write",
    "records:write", "*", "VIEWER", "2026-05-06T14:23:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "2026-02-30", "2026-05-06", "not,a\n1,2\n", "id,fullName,email\nr1,Ada,ada@example.com\n", '{"records": []}',
    "text/markdown", "text/html", "tag-1",
]
INTS = [0, 1, -1, 2, 100, 101, 1000, 1001, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63)]
FLOATS = [0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 1e-300, 5e-324, 1e16, 1e308, -1e308, 3.4028235e38]
DATETIMES = [
    "2026-05-06T14:23:00Z", "2026-05-06T14:23:00.123456+02:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "2026-05-06T14:23:00", "2026-13-01T00:00:00Z", "yesterday",
    "2026-05-06", "",
]



def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `options`, each drawn `weight` times in `sum(weights)`: mostly sound values reach
    the services' rules, the hostile ones test the edges."""
    total = sum(weight for weight, _ in options)

    def pick(n: int) -> st.SearchStrategy[Any]:
        for weight, option in options:
            if n < weight:
                return option
            n -= weight
        raise AssertionError(n)

    return st.integers(0, total - 1).flatmap(pick)


huge = st.sampled_from([1001, 100_001]).map(lambda n: "y" * n)
hostile_strings = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12), huge)
strings = weighted((3, st.sampled_from(REALISTIC_STRINGS)), (2, hostile_strings))
ints = weighted((4, st.integers(-5, 200)), (1, st.sampled_from(INTS)))
floats = weighted((3, st.floats(0, 1)), (1, st.sampled_from(FLOATS)), (1, st.floats(allow_nan=False, allow_infinity=False)))
datetimes = weighted((4, st.sampled_from(DATETIMES[:2])), (2, st.sampled_from(DATETIMES)), (1, strings))


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), ints, floats, strings)
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(keys, inner, max_size=4)), max_leaves=10)


wrong_types = st.one_of(st.booleans(), ints, floats, strings, st.just([]), st.just({"x": 1}), st.lists(ints, max_size=2))

EMAILS = ["fuzz@example.com", "seed0@example.com", "Seed1@Example.com", "new-person@example.org"]
"Sound values for inputs of these names, so that a mutation gets past its first rule."
STRING_HINTS: dict[str, list[str]] = {
    "email": EMAILS, "address": EMAILS, "emails": EMAILS, "participants": EMAILS,
    "password": ["correct horse battery", "another long passphrase"], "workspaceName": ["Fuzz Two"],
    "fullName": ["Ada Lovelace", "Grace Hopper"], "kind": ["knows", "works_with", "advises"],
    "type": ["note.added", "message.sent", "meeting.held"], "resourceId": ["r1", "r2", "n1"],
    "url": ["https://example.com/a"], "contentType": ["text/plain", "text/markdown", "text/html"],
    "name": ["ticket_two", "imap-acme", "Fuzz key", "T2", "openedAt"], "displayName": ["Fuzz"],
    "title": ["A title", "Doc"], "content": ["Some content", "# Heading\n\nBody"], "scopes": ["contacts:read", "*"],
    "tags": ["vip", "new"], "remoteId": ["rem-1", "rem-2"], "query": ["seed", "hello", "\"a phrase\"", "wor*"],
    "summary": ["Met for coffee"], "label": ["Label"], "options": ["open", "closed", "bug"],
}
JSON_HINTS: dict[str, list[Any]] = {
    "data": [{"records": [{"id": "x1", "fullName": "X", "email": "x1@example.com"}]}, "id,fullName\nr1,Ada\n",
             "not,a\n1,2\n", {"records": []}, [[{"content": {"documentIdentifier": "d1"}}], {"timeTaken": 1}]],
    "fieldMapping": [{"id": "remoteId", "fullName": "fullName"}, {"not": "nickname"}, {"id": "id:int"}],
    "config": [{"file": "contacts.csv", "import": {"target": "CONTACTS", "adapter": "CSV"}}, {}],
    "customFields": [{"region": "us"}, {"score": 1.5}], "metadata": [{"threadId": "t1"}, {"region": "eu"}],
}


# ---------------------------------------------------------------- the seeded workspace


class World:
    """The fuzzed workspace: its owner, its nodes' ids and field names, and its tables."""

    def __init__(self, account: Account, ids: list[str], field_names: list[str], db: psycopg.AsyncConnection[Any],
                 tables: list[str]) -> None:
        self.account, self.ids, self.field_names, self.db, self.tables = account, ids, field_names, db, tables
        self.workspace_uuid = uuid.UUID(base64.b64decode(account.workspace_id).decode().split(":")[1])
        self.cache: dict[int, st.SearchStrategy[Any]] = {}

    def __repr__(self) -> str:
        return f"World({self.account.email})"

    def id_values(self, types: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
        """Mostly ids of the workspace's nodes (of `types` when the input's name tells them)."""
        foreign = [base64.b64encode(f"{t}:{uuid.uuid4()}".encode()).decode() for t in ("Contact", "Record", "Nope")]
        odd = ["", "Q29udGFjdDo=", base64.b64encode(b"Contact:not-a-uuid").decode(), str(uuid.uuid4()), "!!"]
        typed = [i for i in self.ids if base64.b64decode(i).decode().split(":")[0] in types] or self.ids
        return weighted((8, st.sampled_from(typed)), (2, st.sampled_from(self.ids)), (2, st.sampled_from(foreign + odd)),
                        (1, strings))

    def strings(self) -> st.SearchStrategy[str]:
        return weighted((3, strings), (1, st.sampled_from(self.field_names)))

    async def fingerprint(self) -> list[Any]:
        """Every row of the workspace (a hash of each table's rows), and the accounts."""
        parts = [f"select '{t}', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) from {t} x "
                 f"where workspace_id = %(ws)s" for t in self.tables]
        parts.append("select 'users', count(*), 0 from users union all select 'workspaces', count(*), 0 from workspaces")
        cursor = await self.db.execute(" union all ".join(parts), {"ws": self.workspace_uuid})
        return sorted(await cursor.fetchall())


SEED_FIELDS = [
    {"name": "title", "fieldType": "STRING", "required": True}, {"name": "body", "fieldType": "TEXT"},
    {"name": "amountUsd", "fieldType": "INT"}, {"name": "score", "fieldType": "FLOAT"},
    {"name": "urgent", "fieldType": "BOOLEAN"}, {"name": "due", "fieldType": "DATE"},
    {"name": "openedAt", "fieldType": "DATETIME"}, {"name": "email", "fieldType": "EMAIL"},
    {"name": "link", "fieldType": "URL"}, {"name": "status", "fieldType": "SELECT", "options": ["open", "closed"]},
    {"name": "labels", "fieldType": "MULTI_SELECT", "options": ["bug", "ui"]}, {"name": "extra", "fieldType": "JSON"},
    {"name": "ref", "fieldType": "REFERENCE"},
]


async def _seed(api: Api, who: Account) -> list[str]:
    """A few nodes of every kind; their global ids."""
    async def one(query: str, variables: dict[str, Any], *path: str) -> str:
        data = await api.data(query, variables, **who.auth)
        for key in path:
            data = data[key]
        return str(data)

    source = await one("mutation($i: CreateSourceInput!) { createSource(input: $i) { source { id } } }",
                       {"i": {"name": "seed-api", "displayName": "Seed", "provider": "API"}}, "createSource", "source", "id")
    contacts = [await one("mutation($i: CreateContactInput!) { createContact(input: $i) { contact { id } } }",
                          {"i": {"fullName": f"Seed {n}", "email": f"seed{n}@example.com", "tags": ["vip"],
                                 "customFields": {"region": "eu"}}}, "createContact", "contact", "id") for n in range(3)]
    type_id = await one("mutation($i: CreateObjectTypeInput!) { createObjectType(input: $i) { objectType { id } } }",
                        {"i": {"name": "ticket", "displayName": "Ticket", "fieldDefinitions": SEED_FIELDS}},
                        "createObjectType", "objectType", "id")
    record = await one("mutation($i: CreateRecordInput!) { createRecord(input: $i) { record { id } } }",
                       {"i": {"objectTypeId": type_id, "name": "T1", "fields": {"title": "First", "amountUsd": 3,
                                                                               "ref": contacts[0]}}},
                       "createRecord", "record", "id")
    edge = await one("mutation($i: CreateRelationshipInput!) { createRelationship(input: $i) { relationship { id } } }",
                     {"i": {"sourceId": contacts[0], "targetId": contacts[1], "kind": "knows"}},
                     "createRelationship", "relationship", "id")
    document = await one("mutation($i: CreateDocumentInput!) { createDocument(input: $i) { document { id } } }",
                         {"i": {"title": "Doc", "content": "Hello world", "linkTo": [contacts[0]]}},
                         "createDocument", "document", "id")
    event = await one("mutation($i: RecordActivityInput!) { recordActivity(input: $i) { event { id } } }",
                      {"i": {"contactId": contacts[0], "type": "note.added", "resourceId": "n1",
                             "occurredAt": "2026-05-06T14:23:00Z"}}, "recordActivity", "event", "id")
    key = await one("mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } } }",
                    {"i": {"name": "seed", "scopes": ["contacts:read"]}}, "createApiKey", "apiKey", "id")
    member = await one("mutation { inviteMember(input: {email: \"invitee@example.com\", role: VIEWER}) { member { id } } }",
                       {}, "inviteMember", "member", "id")
    job = await one("mutation($i: StartImportInput!) { startImport(input: $i) { job { id } } }",
                    {"i": {"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": [{"id": "j1"}]}}},
                    "startImport", "job", "id")
    return [source, *contacts, type_id, record, edge, document, event, key, member, job, who.workspace_id, who.user_id]


@pytest.fixture(scope="module")
async def world(api: Api, settings: Settings) -> Any:
    who = await sign_up(api, workspace="Fuzz Co")
    ids = await _seed(api, who)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as db:
        cursor = await db.execute("select table_name from information_schema.columns where table_schema = 'public' "
                                  "and column_name = 'workspace_id' order by 1")
        tables = [row[0] for row in await cursor.fetchall()]
        field_names = [f["name"] for f in SEED_FIELDS] + ["region", "nope", "records", "fields.title"]
        yield World(who, ids, field_names, db, tables)


# ---------------------------------------------------------------- values of input types


def values(t: GraphQLInputType, w: World, depth: int = 0, name: str = "") -> st.SearchStrategy[Any]:
    """Values for input type `t` (of an input named `name`): mostly of its shape, sometimes null
    or of another type."""
    if isinstance(t, GraphQLNonNull):
        shaped = _shaped(t.of_type, w, depth, name)
        return weighted((40, shaped), (1, st.none()), (1, wrong_types)) if depth else shaped
    return weighted((30, _shaped(t, w, depth, name)), (2, st.none()), (1, wrong_types))


def _shaped(t: GraphQLInputType, w: World, depth: int, name: str) -> st.SearchStrategy[Any]:
    if isinstance(t, GraphQLList):
        item = values(t.of_type, w, depth + 1, name)
        over_the_cap = item.filter(lambda v: len(repr(v)) < 1000).map(lambda v: [v] * 1001)
        return weighted((20, st.lists(item, max_size=3)), (1, over_the_cap if depth < 2 else item), (1, item))
    if isinstance(t, GraphQLEnumType):
        return weighted((20, st.sampled_from(list(t.values))), (1, st.sampled_from(["NOPE", "asc"])))
    if isinstance(t, GraphQLInputObjectType):
        return _input_object(t, w, depth)
    assert isinstance(t, GraphQLScalarType)
    if t.name == "String":
        hinted = STRING_HINTS.get(name) or (w.field_names if name in ("field", "customField") else None)
        return weighted((6, st.sampled_from(hinted)), (2, strings), (1, hostile_strings)) if hinted else w.strings()
    if t.name == "JSON":
        if name == "fields":
            return weighted((6, st.dictionaries(st.sampled_from(w.field_names), json_values(w.strings()), max_size=4)),
                            (1, json_values(w.strings())))
        if name in JSON_HINTS:
            return weighted((4, st.sampled_from(JSON_HINTS[name])), (1, json_values(w.strings())))
        return json_values(w.strings())
    return {
        "ID": w.id_values(id_types(name)), "Int": ints, "Float": floats, "Boolean": st.booleans(), "DateTime": datetimes,
        "Upload": st.none(),
    }.get(t.name, strings)


NODE_TYPES = ("Contact", "Record", "Document", "Source", "ObjectType", "Relationship", "ApiKey", "Member", "Job",
              "Workspace", "User", "ActivityEvent")
ENDPOINTS = ("Contact", "Record", "Document")
ID_HINTS = {"objectTypeId": ("ObjectType",), "contactId": ("Contact",), "authorId": ("Contact",),
            "ownerId": ("Member",), "documentId": ("Document",), "nodeId": ENDPOINTS, "targetId": ENDPOINTS,
            "linkTo": ENDPOINTS, "focus": ("Contact",), "from": ("Contact",), "to": ("Contact",)}


def id_types(name: str) -> tuple[str, ...]:
    """The node types an id input of this name (or of a field named after a type: the id of
    deleteObjectType, Member of updateMemberRole) should mostly name."""
    if name in ID_HINTS:
        return ID_HINTS[name]
    named = [t for t in NODE_TYPES if t.lower() in name.lower()]
    return (max(named, key=len),) if named else ()


def _input_object(t: GraphQLInputObjectType, w: World, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 3:
        return st.just({})
    fields = t.fields

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, f in fields.items():
            required = isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
            if required or draw(st.booleans()):
                out[name] = draw(values(f.type, w, depth + 1, name))
        if draw(weighted((29, st.just(False)), (1, st.just(True)))):
            out[draw(strings)] = draw(strings)  # an unknown field
        return out

    return build()


def arguments(field_name: str, f: GraphQLField, w: World) -> st.SearchStrategy[dict[str, Any]]:
    key = id(f)
    if key not in w.cache:
        def hint(arg: str) -> str:  # a mutation's `id`/`ids` name the type the mutation is about
            return f"{field_name} {arg}" if arg in ("id", "ids") else arg

        required = {a: values(arg.type, w, 0, hint(a)) for a, arg in f.args.items() if isinstance(arg.type, GraphQLNonNull)}
        optional = {a: values(arg.type, w, 0, hint(a)) for a, arg in f.args.items() if a not in required}
        w.cache[key] = st.fixed_dictionaries(required, optional=optional)
    return w.cache[key]


# ---------------------------------------------------------------- documents


def selection(t: Any, depth: int) -> str:
    """__typename, the leaves that take no required argument, and objects `depth` levels down."""
    named = get_named_type(t)
    if isinstance(named, GraphQLUnionType | GraphQLInterfaceType) or not isinstance(named, GraphQLObjectType):
        return "{ __typename }" if not isinstance(named, GraphQLScalarType | GraphQLEnumType) else ""
    parts = ["__typename"]
    for name, f in named.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) for a in f.args.values()):
            continue
        inner = get_named_type(f.type)
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif depth > 0 or name == "userErrors":
            parts.append(f"{name} {selection(f.type, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


def document(kind: str, name: str, f: GraphQLField, depth: int) -> str:
    """The operation calling field `name` with every argument as a variable of its declared
    type: variables reach the coercion and the services as a client's JSON does."""
    declared = ", ".join(f"${a}: {arg.type}" for a, arg in f.args.items())
    passed = ", ".join(f"{a}: ${a}" for a in f.args)
    head = f"{kind} Fuzz({declared})" if declared else kind
    return f"{head} {{ {name}{f'({passed})' if passed else ''} {selection(f.type, depth)} }}"


# ---------------------------------------------------------------- properties


async def send(api: Api, w: World, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The answer, checked: no 5xx, and every error a code the client can act on."""
    body = json.dumps({"query": query, "variables": variables})  # ASCII: lone surrogates travel as escapes
    response = await api.http.post("/graphql", content=body, headers={
        "content-type": "application/json", "authorization": f"Bearer {w.account.token}",
        "x-workspace-id": w.account.workspace_id})
    assert response.status_code < 500, (response.status_code, response.text[:500])
    answer: dict[str, Any] = response.json()
    for error in answer.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code and code != "INTERNAL_SERVER_ERROR", error
    return answer


def refused(body: dict[str, Any], name: str) -> bool:
    """A GraphQL error, no payload, or userErrors: the contract says nothing was written."""
    payload = (body.get("data") or {}).get(name)
    return bool(body.get("errors")) or not isinstance(payload, dict) or bool(payload.get("userErrors"))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@FUZZ
@given(data=st.data())
async def test_mutations_answer_bad_input_cleanly_and_change_nothing_when_refused(
    api: Api, world: World, name: str, data: st.DataObject
) -> None:
    f = MUTATIONS[name]
    variables = data.draw(arguments(name, f, world), label="variables")
    before = await world.fingerprint()
    body = await send(api, world, document("mutation", name, f, 1), variables)
    if refused(body, name):
        assert await world.fingerprint() == before, body


@pytest.mark.parametrize("name", sorted(QUERIES))
@FUZZ
@given(data=st.data())
async def test_queries_and_filters_answer_bad_input_cleanly(api: Api, world: World, name: str,
                                                           data: st.DataObject) -> None:
    f = QUERIES[name]
    variables = data.draw(arguments(name, f, world), label="variables")
    await send(api, world, document("query", name, f, 2), variables)


def test_every_mutation_and_filter_is_fuzzed() -> None:
    """The cases come from introspection: a new mutation or filtered query is a case as it lands."""
    filtered = {name for name, f in QUERIES.items() if "filter" in f.args}
    assert {"contacts", "records", "sources", "documents", "jobs", "relationships"} <= filtered
    assert {"createRecord", "startImport", "signUp", "createRelationships"} <= set(MUTATIONS)
