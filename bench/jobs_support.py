"""Shared by bench/import.py, bench/subscriptions.py and bench/graph_load.py: migrated settings, processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.db.migrate import upgrade
from support import database

CTXGRAPH = str(Path(sys.executable).with_name("ctxgraph"))
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def scratch_settings(home: Path, **changes: Any) -> Iterator[Settings]:
    """Settings over a new, migrated database, dropped afterwards."""
    with database(ADMIN_URL) as url:
        settings = Settings(database_url=url, redis_url=REDIS_URL, home=home,
                            rate_limit_per_minute=10_000_000, **changes).with_secrets()
        upgrade(settings)
        yield settings


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
            "CTXGRAPH_HOME": str(settings.home), "CTXGRAPH_LOG_LEVEL": "warning",
            "CTXGRAPH_RATE_LIMIT_PER_MINUTE": "10000000", **extra}


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([CTXGRAPH, *args], env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def graphql(url: str, token: str, workspace: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=300,
                          headers={"authorization": f"Bearer {token}", "x-workspace-id": workspace})
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]  # type: ignore[no-any-return]


START = """mutation($input: StartImportInput!) { startImport(input: $input) {
  job { id status } userErrors { field message code } } }"""
JOB = "query($id: ID!) { node(id: $id) { ... on Job { status error result progress { processed total } } } }"


def contacts(n: int) -> list[dict[str, Any]]:
    return [{"id": f"b-{i}", "fullName": f"Bench Person {i}", "email": f"bench{i}@example.com"} for i in range(n)]
