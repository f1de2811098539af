"""Crash safety with real worker processes: SIGKILL mid-job, resume on another worker, bounded
attempts, and the reaper re-sending a job whose message was lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.config import Settings
from app.jobs.broker import setup_broker
from tests.conftest import Account, Api
from tests.jobs_support import contacts_payload, items, job_state, running_worker, start_import, wait_for

CTXGRAPH = str(Path(sys.executable).with_name("ctxgraph"))
COUNT_CONTACTS = "{ contacts(first: 1) { totalCount } }"


@contextmanager
def worker_process(settings: Settings, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = {
        **os.environ, "DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
        "CTXGRAPH_HOME": str(settings.home), "CTXGRAPH_JOB_STALE_SECONDS": "3",
        "CTXGRAPH_JOB_REAPER_INTERVAL_SECONDS": "1", "CTXGRAPH_JOB_BATCH_SIZE": "100",
        "CTXGRAPH_LOG_LEVEL": "warning", **env,
    }
    process = subprocess.Popen([CTXGRAPH, "worker", "--threads", "1"], env=environment)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _kill_mid_job(api: Api, account: Account, settings: Settings, job_id: str, **env: str) -> dict:
    """Run the job on a worker process and SIGKILL it once some batches have committed."""
    with worker_process(settings, **env) as process:
        deadline = time.monotonic() + 60
        while True:
            job = await job_state(api, account, job_id)
            assert job is not None and job["status"] in ("PENDING", "RUNNING"), job
            if job["progress"]["processed"] >= 300:
                break
            assert time.monotonic() < deadline, "the worker process made no progress"
            await asyncio.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    return await job_state(api, account, job_id)  # type: ignore[return-value]


async def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(api: Api, alice: Account, settings: Settings) -> None:
    n = 6000
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(n, "k"))
    job_id = started["job"]["id"]
    killed = await _kill_mid_job(api, alice, settings, job_id)
    assert killed["status"] == "RUNNING" and 300 <= killed["progress"]["processed"] < n, killed

    with worker_process(settings):
        done = await wait_for(api, alice, job_id, timeout=90)
    assert done["status"] == "COMPLETED", done
    assert done["attempts"] == 2
    assert done["progress"] == {"total": n, "processed": n, "successful": n, "failed": 0, "skipped": 0}
    assert done["result"]["created"] == n and done["result"]["failed"] == 0
    assert (await api.data(COUNT_CONTACTS, **alice.auth))["contacts"]["totalCount"] == n
    assert (await items(api, alice, job_id))["totalCount"] == n


async def test_a_job_whose_worker_dies_every_time_ends_failed(api: Api, alice: Account, settings: Settings) -> None:
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(6000, "d"))
    job_id = started["job"]["id"]
    await _kill_mid_job(api, alice, settings, job_id, CTXGRAPH_JOB_MAX_ATTEMPTS="1")
    with worker_process(settings, CTXGRAPH_JOB_MAX_ATTEMPTS="1"):
        done = await wait_for(api, alice, job_id, timeout=90)
    assert done["status"] == "FAILED"
    assert done["error"].startswith("Gave up after 1 attempts")
    assert done["finishedAt"] is not None


async def test_the_reaper_sends_again_a_job_whose_message_was_lost(api: Api, alice: Account, settings: Settings) -> None:
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(10, "l"))
    job_id = started["job"]["id"]
    setup_broker(settings).flush_all()  # as if Redis restarted empty: this test run's queues only
    await asyncio.sleep(0.5)
    assert (await job_state(api, alice, job_id))["status"] == "PENDING"  # type: ignore[index]
    with running_worker(settings, job_stale_seconds=2, job_reaper_interval_seconds=1):
        done = await wait_for(api, alice, job_id, timeout=30)
    assert done["status"] == "COMPLETED" and done["progress"]["successful"] == 10
