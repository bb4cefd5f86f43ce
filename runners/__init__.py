"""Execution: the worker process, model adapters, profile controls and executors."""
