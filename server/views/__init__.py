"""Read-only views for the pages, the status API and /metrics (files in server/views/): progress,
browsing, why records are stuck.
"""
