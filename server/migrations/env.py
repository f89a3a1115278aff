"""Alembic environment: run migrations on the connection `farmhand.server.migrate` hands over.

Used programmatically only (no alembic.ini): the caller puts an open connection in
`config.attributes["connection"]`. SQLite gets batch mode, so later revisions can alter
tables there (SQLite's ALTER TABLE cannot drop or change columns).
"""

from __future__ import annotations

from alembic import context

from farmhand.server import tables

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=tables.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=tables.include_object_for(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
