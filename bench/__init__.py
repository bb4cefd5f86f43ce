"""Heptathlon core: domain types, scenarios, metrics and statistics, and the CLI."""

__version__ = "0.1.0"
