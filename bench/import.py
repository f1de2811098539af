"""100,000 contacts through startImport (GENERIC_JSON) end to end, submit to COMPLETED, with one
worker process; then a plain COPY of the same rows into a scratch table. Prints both times,
items/s and their ratio (target: the import at >= 0.5x the COPY rate).

    .venv/bin/python bench/import.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_support import (  # noqa: E402
    JOB, START, contacts, env_of, graphql, process, scratch_settings, wait_healthy,
)
from support import free_port, sign_up  # noqa: E402


TIMES = "query($id: ID!) { node(id: $id) { ... on Job { createdAt startedAt finishedAt } } }"


def _between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main(n: int) -> None:
    rows = contacts(n)
    with tempfile.TemporaryDirectory() as home, scratch_settings(Path(home)) as settings:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = env_of(settings)
        with process(["serve", "--no-worker", "--port", str(port)], env) as server, \
                process(["worker", "--threads", "1"], env):
            wait_healthy(url, server)
            token, workspace = sign_up(url)
            started = time.perf_counter()
            job = graphql(url, token, workspace, START, {"input": {
                "target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": rows}}})["startImport"]
            assert not job["userErrors"], job["userErrors"]
            submitted = time.perf_counter() - started
            while True:
                state = graphql(url, token, workspace, JOB, {"id": job["job"]["id"]})["node"]
                if state["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.05)
            import_seconds = time.perf_counter() - started
            assert state["status"] == "COMPLETED", state
            assert state["result"]["created"] == n, state["result"]
            times = graphql(url, token, workspace, TIMES, {"id": job["job"]["id"]})["node"]
            queued, running = (_between(times["createdAt"], times[end]) for end in ("startedAt", "finishedAt"))

        with psycopg.connect(settings.database_url or "") as conn:
            conn.execute("CREATE TABLE bench_copy (remote_id text, full_name text, email text)")
            started = time.perf_counter()
            with conn.cursor().copy("COPY bench_copy (remote_id, full_name, email) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((row["id"], row["fullName"], row["email"]))
            conn.commit()
            copy_seconds = time.perf_counter() - started
            # For scale: the same COPY into a table shaped like contacts (its indexes, its
            # generated search vector), the floor any import into contacts pays.
            conn.execute("CREATE TABLE bench_shaped (LIKE contacts INCLUDING ALL)")
            started = time.perf_counter()
            columns = "id, workspace_id, full_name, email, remote_id"
            with conn.cursor().copy(f"COPY bench_shaped ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((uuid.uuid4(), uuid.UUID(int=0), row["fullName"], row["email"], row["id"]))
            conn.commit()
            shaped_seconds = time.perf_counter() - started

    import_rate, copy_rate = n / import_seconds, n / copy_seconds
    print(f"contacts:                 {n}")
    print(f"startImport (submit):     {submitted:.2f} s")
    print(f"import end to end:        {import_seconds:.2f} s  {import_rate:,.0f} items/s")
    print(f"  of which queued:        {queued:.2f} s (until a worker took the job; then "
          f"{running - queued:.2f} s to COMPLETED)")
    print(f"plain COPY:               {copy_seconds:.2f} s  {copy_rate:,.0f} items/s")
    print(f"import / COPY rate:       {import_rate / copy_rate:.3f}x (target >= 0.5x)")
    print(f"COPY, contacts-shaped:    {shaped_seconds:.2f} s  {n / shaped_seconds:,.0f} items/s"
          f"  (import / it: {import_rate / (n / shaped_seconds):.3f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
