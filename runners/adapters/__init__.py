"""Model adapters: one module per runtime, each implementing ``ModelAdapter``; ``registry`` maps
kinds and runtime names to them."""

from heptathlon.runners.adapters.registry import make_adapter

__all__ = ["make_adapter"]
