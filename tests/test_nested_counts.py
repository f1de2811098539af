"""Nested connections under lists (Record.history, Record.documents, Document.versions,
Contact.documents) cost the same number of SQL statements for 2 parents as for 6."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account, Api, SqlCounter, sign_up
from tests.test_records import make, make_type

DOC = "mutation($input: CreateDocumentInput!) { createDocument(input: $input) { document { id } userErrors { code } } }"
UPDATE_DOC = "mutation($id: ID!, $c: String!) { updateDocument(id: $id, input: {content: $c}) { userErrors { code } } }"
UPDATE_RECORD = "mutation($id: ID!, $f: JSON!) { updateRecord(id: $id, input: {fields: $f}) { userErrors { code } } }"
NESTED = """
{
  records(first: 50) { edges { node { name
    history(first: 5) { totalCount edges { node { version } } }
    documents(first: 5) { totalCount edges { node { title versions(first: 3) { totalCount edges { node { version } } } } } }
  } } }
}
"""


async def seed(api: Api, who: Account, n: int) -> None:
    type_id = await make_type(api, who, "nested")
    for i in range(n):
        record = await make(api, who, type_id, {"title": f"T{i}"}, name=f"R{i}")
        await api.data(UPDATE_RECORD, {"id": record["id"], "f": {"title": f"T{i} again"}}, **who.auth)
        doc = (await api.data(DOC, {"input": {"title": f"D{i}", "content": f"text {i}", "linkTo": [record["id"]]}},
                              **who.auth))["createDocument"]["document"]
        await api.data(UPDATE_DOC, {"id": doc["id"], "c": f"text {i} revised"}, **who.auth)


async def measure(api: Api, who: Account, sql: SqlCounter) -> tuple[int, dict[str, Any]]:
    with sql:
        data = await api.data(NESTED, **who.auth)
    return sql.count, data


async def test_statement_count_does_not_grow_with_parents(api: Api, sql: SqlCounter) -> None:
    small, large = await sign_up(api), await sign_up(api)
    await seed(api, small, 2)
    await seed(api, large, 6)
    few, few_data = await measure(api, small, sql)
    many, many_data = await measure(api, large, sql)
    assert len(many_data["records"]["edges"]) == 6
    node = many_data["records"]["edges"][0]["node"]
    assert node["history"]["totalCount"] == 2 and [e["node"]["version"] for e in node["history"]["edges"]] == [2, 1]
    doc = node["documents"]["edges"][0]["node"]
    assert node["documents"]["totalCount"] == 1 and doc["versions"]["totalCount"] == 2
    assert few == many, (few, many)
