"""Record commands (files in agent/cli/records/): `ls`/`show`, `cancel`/`retry`, `results`."""
