"""Alembic migrations for the server's database (files in server/migrations/);
`farmhand.server.migrate` drives them."""
