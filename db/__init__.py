"""Storage: SQLAlchemy 2.0 models, session, named query functions and Alembic migrations."""
