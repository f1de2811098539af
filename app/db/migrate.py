"""Apply Alembic migrations from code, so `ctxgraph serve` and `ctxgraph migrate` need no alembic.ini.

`migrations/env.py` takes the URL from the `sqlalchemy.url` main option set here, and holds an
advisory lock so that concurrent starts migrate one at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings) -> Config:
    """An in-memory Alembic config pointing at the repo's `migrations/` and the settings' database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Options go through configparser interpolation: a literal '%' (e.g. in a password) is '%%'.
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "heads") -> None:
    """Upgrade the database to `revision` (default: the latest of every domain branch)."""
    from alembic import command

    command.upgrade(alembic_config(settings), revision)
