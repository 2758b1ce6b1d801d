"""What every data command shares: a clear message instead of a traceback when the database has not
been migrated yet (a fresh ZOO_VAR_DIR, a new PostgreSQL database)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def ensure_migrated(using: str = DEFAULT_DB_ALIAS) -> None:
    connection = connections[using]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        apps = sorted({migration.app_label for migration, _ in pending})
        raise CommandError(f"the database {connection.settings_dict['NAME']} has {len(pending)} unapplied "
                           f"migration(s) ({', '.join(apps)}): run `manage.py migrate` first")


class DataCommand(BaseCommand):
    """A command that reads or writes the platform's tables: refuses to start on an unmigrated database."""

    def execute(self, *args, **options):
        ensure_migrated(options.get("database") or DEFAULT_DB_ALIAS)
        return super().execute(*args, **options)
