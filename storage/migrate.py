"""Apply Alembic migrations: the only way the schema is created or changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from core.settings import SettingsError, load_settings
from storage.database import Database, DatabaseUnavailable, PoolOptions

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def main() -> None:
    parser = argparse.ArgumentParser(description="Migrate Stride's database (STRIDE_* settings).")
    parser.add_argument("action", choices=["upgrade", "downgrade"], nargs="?", default="upgrade")
    parser.add_argument("revision", nargs="?", help="target revision (head / base by default)")
    args = parser.parse_args()
    try:
        # Migrating needs only the database: no secret key or admin token.
        settings = load_settings(require_shared_secrets=False)
    except SettingsError as exc:
        print(f"stride-migrate: {exc}", file=sys.stderr)
        sys.exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.primary_database_url, [], PoolOptions(size=1, max_overflow=0))
    try:
        database.wait_until_reachable(settings.db_connect_attempts)
        if args.action == "upgrade":
            upgrade(database.primary, args.revision or "head")
        else:
            downgrade(database.primary, args.revision or "base")
    except DatabaseUnavailable as exc:
        sys.exit(str(exc))
    finally:
        database.dispose()
    print(f"database at {args.revision or ('head' if args.action == 'upgrade' else 'base')}")


if __name__ == "__main__":
    main()
