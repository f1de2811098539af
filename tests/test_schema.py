"""The exported SDL is current, and stays a superset of the public contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from graphql import build_schema

from schema import schema

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT.parent / "shared" / "design" / "contract.graphql"
TOOL = ROOT.parent / "shared" / "tools" / "contract_check.py"

# The types and fields of the contract the foundation delivers; each domain adds its own below.
FOUNDATION = [
    "Node", "PageInfo", "UserError", "SortDirection", "StringFilter", "FloatFilter", "DateTimeFilter", "IDFilter",
    "Viewer", "User", "Workspace", "MemberRole", "Member", "ApiKey", "SourceProvider", "SourceStatus", "Source",
    "SignUpInput", "LoginInput", "AuthPayload", "CreateWorkspaceInput", "WorkspacePayload", "InviteMemberInput",
    "MemberPayload", "DeletePayload", "CreateApiKeyInput", "ApiKeySecretPayload", "ApiKeyPayload",
    "CreateSourceInput", "UpdateSourceInput", "SourcePayload", "SourceEdge", "SourceConnection", "ApiKeyEdge",
    "ApiKeyConnection", "MemberEdge", "MemberConnection",
]
FOUNDATION_FIELDS = {
    "Query": ["node", "nodes", "viewer", "workspace", "sources", "apiKeys", "members"],
    "Mutation": [
        "signUp", "login", "refreshToken", "createWorkspace", "inviteMember", "updateMemberRole", "removeMember",
        "createApiKey", "rotateApiKey", "revokeApiKey", "createSource", "updateSource", "deleteSource",
        "pauseSource", "resumeSource",
    ],
}


def _version_one(contract: str) -> str:
    """The contract without its v2 sections (the work of the issues after the foundation): the
    foundation is checked against what it promised, and `contract_check.py` lists the rest."""
    return contract.split("\n# ================================================================ v2:", 1)[0]


def test_schema_graphql_is_current() -> None:
    exported = subprocess.run(
        [sys.executable, "-m", "app.cli", "schema"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert exported.strip() == schema.as_str().strip()
    assert (ROOT / "schema.graphql").read_text().strip() == exported.strip(), (
        "schema.graphql is stale: run `ctxgraph schema > schema.graphql`"
    )


@pytest.mark.skipif(not CONTRACT.exists(), reason="the shared contract is not beside this checkout")
def test_foundation_part_of_the_contract_is_served() -> None:
    contract = build_schema(_version_one(CONTRACT.read_text()))
    served = build_schema((ROOT / "schema.graphql").read_text())
    for name in FOUNDATION:
        expected, actual = contract.type_map[name], served.type_map.get(name)
        assert actual is not None, name
        for field, definition in getattr(expected, "fields", {}).items():
            assert field in actual.fields, f"{name}.{field}"
            assert str(actual.fields[field].type) == str(definition.type), f"{name}.{field}"
        for value in getattr(expected, "values", {}):
            assert value in actual.values, f"{name}.{value}"
    for root, fields in FOUNDATION_FIELDS.items():
        expected, actual = contract.type_map[root], served.type_map[root]
        for field in fields:
            assert str(actual.fields[field].type) == str(expected.fields[field].type), f"{root}.{field}"
            for arg, definition in expected.fields[field].args.items():
                assert str(actual.fields[field].args[arg].type) == str(definition.type), f"{root}.{field}({arg})"
