"""Executors: run a WorkerJob somewhere and return its WorkerResult."""
