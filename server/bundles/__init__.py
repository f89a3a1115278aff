"""Bundles (files in server/bundles/): export a campaign, import it elsewhere."""
