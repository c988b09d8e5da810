"""Integrations that pull in optional dependencies: Flask, the HTTP admin API, webhooks."""
