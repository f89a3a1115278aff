"""Snapshot routes (files in server/routes/snapshots/): one at a time (PUT, HEAD, GET, list,
checkpoints) and many small ones in one request (POST /snapshots/batch)."""
