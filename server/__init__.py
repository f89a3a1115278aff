"""The farmhand server, `farmhand.server` (files in server/): app, settings, db, tables, auth and
errors here; the queue, catalog, storage, bundles, views, serving, routes, pages and
migrations in their folders (docs/architecture.md has the map)."""
