"""Alembic environment: runs revisions as the database owner, one process at a time.

An advisory lock serialises concurrent starts (several API processes and workers may run
`migrate` together); the revisions themselves are plain SQL, written and reviewed by hand.
"""

import sys
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool, text

sys.path.insert(0, str(Path(__file__).parent))  # the revisions share migrations/tenancy.py

MIGRATION_LOCK = 72_6174_2024  # any constant shared by every process of this app

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sqlalchemy.url is not set: run migrations through `ctxgraph migrate`")

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    connection.execute(text("select pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("select pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
engine.dispose()
