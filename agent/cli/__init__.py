"""The `farmhand` command (files in agent/cli/): one module per command family."""
