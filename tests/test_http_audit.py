"""The GraphQL-over-HTTP spec's own server audits (npm graphql-http), MUST and SHOULD alike,
against the app served by uvicorn. Skipped where Node.js or the npm registry is unavailable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "http_audit"


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js is not installed")
    target = tmp_path_factory.mktemp("http_audit")
    for name in ("package.json", "audit.mjs"):
        shutil.copy(HERE / name, target / name)
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=target, capture_output=True, text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"npm install failed: {installed.stderr[-300:]}")
    return target


def test_every_server_audit_passes(audit_dir: Path, live_server: str) -> None:
    run = subprocess.run(
        ["node", "audit.mjs", f"{live_server}/graphql"], cwd=audit_dir, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1].endswith(" 0 failed"), run.stdout
    assert int(lines[-1].split()[0]) >= 60
