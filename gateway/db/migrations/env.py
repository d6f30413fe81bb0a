"""Alembic environment: migrations run on a connection the gateway hands over.

`gateway/db/migrate.py` runs them inside the gateway's own async engine (`run_sync`), so the
same code path serves `tongban db upgrade`, the CLI commands that set a database up, and the
tests. There is no alembic.ini: the database URL is the gateway's config.
"""

from __future__ import annotations

from alembic import context

from gateway.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
