"""Alembic migrations (package data)."""
