"""Alembic revisions (files in server/migrations/versions/), applied in order by
`farmhand.server.migrate`."""
