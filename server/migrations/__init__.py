"""Alembic migrations for the server's database; `farmhand.server.migrate` drives them."""
