"""The farmhand server, `farmhand.server` (files in server/): app, settings, db, tables, auth and
errors here; the queue, catalog, storage, bundles, views, serving, routes, pages and
migrations in their folders (docs/architecture.md has the map)."""

from farmhand import wire

# The wire models are built on first use, for the agent's start (DESIGN.md: <= 250 ms). The
# server uses them all: it builds them before any of its modules defines a route, so FastAPI
# makes its validators from complete models at import, and no request waits for one.
wire.build_models()
