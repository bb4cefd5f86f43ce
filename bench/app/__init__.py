"""The application layer: the one place that joins the core, execution (runners) and storage (db)."""
