"""Schema migrations (Alembic), run programmatically by `farthing init`."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine) -> None:
    """Create or migrate the schema to the newest revision; safe to run again."""
    with engine.connect() as connection:
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
