"""The HTTP API under /api/v1 (files in server/routes/): one module per resource; each route
owns its transaction."""
