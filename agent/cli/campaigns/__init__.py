"""Campaign commands (files in agent/cli/campaigns/): `campaign new|…`, `submit`, and archiving."""
