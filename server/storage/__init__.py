"""Snapshot storage (files in server/storage/): snapshot rows, the blob stores (files, S3) and
backups.
"""
