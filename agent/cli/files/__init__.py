"""The files the CLI reads and writes (files in agent/cli/files/): campaign files and tasklists,
bundles, backups.
"""
