"""The command line: ``heptathlon`` (Typer + Rich)."""

from heptathlon.bench.cli.main import app, main

__all__ = ["app", "main"]
