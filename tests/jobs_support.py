"""Helpers for the jobs, imports and subscriptions tests: a real in-process worker, polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.config import Settings
from app.jobs.worker import start_in_process
from tests.conftest import Account, Api, with_settings

JOB_FIELDS = """
  id kind status error result attempts createdAt startedAt finishedAt
  progress { total processed successful failed skipped }
"""
START_IMPORT = """
mutation($input: StartImportInput!) {
  startImport(input: $input) { job { %s } userErrors { field message code } }
}
""" % JOB_FIELDS
JOB = "query($id: ID!) { node(id: $id) { ... on Job { %s } } }" % JOB_FIELDS
ITEMS = """
query($id: ID!, $status: JobItemStatus) { node(id: $id) { ... on Job {
  items(status: $status, first: 100) { totalCount edges { node { index remoteId status error node { id } } } }
} } }
"""
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
START_IMPORT_FILE = """mutation($input: StartImportInput!) { startImport(input: $input) {
  job { id status } userErrors { field message code } } }"""


def worker_settings(settings: Settings, **changes: Any) -> Settings:
    """Quick to notice a dead worker, small batches: the tests see several batches per job."""
    defaults: dict[str, Any] = {"job_stale_seconds": 3, "job_reaper_interval_seconds": 1, "job_batch_size": 50}
    return with_settings(settings, **{**defaults, **changes})


@contextmanager
def running_worker(settings: Settings, **changes: Any) -> Iterator[None]:
    worker = start_in_process(worker_settings(settings, **changes), threads=2)
    try:
        yield
    finally:
        worker.stop()


async def start_import(api: Api, account: Account, **input_: Any) -> dict[str, Any]:
    data = await api.data(START_IMPORT, {"input": input_}, **account.auth)
    return data["startImport"]


async def job_state(api: Api, account: Account, job_id: str) -> dict[str, Any] | None:
    return (await api.data(JOB, {"id": job_id}, **account.auth))["node"]


async def wait_for(api: Api, account: Account, job_id: str, statuses: tuple[str, ...] = TERMINAL,
                   timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = await job_state(api, account, job_id)
        assert job is not None
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s: {job}"
        await asyncio.sleep(0.1)


async def items(api: Api, account: Account, job_id: str, status: str | None = None) -> dict[str, Any]:
    return (await api.data(ITEMS, {"id": job_id, "status": status}, **account.auth))["node"]["items"]


def contacts_payload(n: int, prefix: str = "c") -> dict[str, Any]:
    return {"records": [
        {"id": f"{prefix}-{i}", "fullName": f"Person {i}", "email": f"{prefix}{i}@example.com"} for i in range(n)
    ]}


async def upload_import(api: Api, account: Account, input_: dict[str, Any], file: tuple[str, bytes, str]) -> Any:
    """startImport with `file` uploaded as the GraphQL multipart request spec says."""
    operations = {"query": START_IMPORT_FILE, "variables": {"input": {**input_, "file": None}}}
    response = await api.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.input.file"]})},
        files={"0": file},
        headers={"authorization": f"Bearer {account.token}", "x-workspace-id": account.workspace_id,
                 "graphql-require-preflight": "1"},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["startImport"]
