"""Alembic environment of the read side: run by services.common.readside.migrate once per tenant schema.

Each schema carries its own alembic_version table; the revisions use unqualified names, resolved in the
schema being migrated (search_path, set for this transaction only: the Alembic cookbook's schema-level
multi-tenancy recipe)."""

from alembic import context
from sqlalchemy import text

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]
connection.execute(text(f'SET LOCAL search_path TO "{schema}", public'))
context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
