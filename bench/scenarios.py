"""Scenarios: load generation. A scenario only produces a schedule of queries and a stop rule;
timing lives in the worker's loop (after MLPerf LoadGen's split between scenario and SUT).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from bench.errors import ScenarioError

CLOSED_LOOP = ("single_stream", "fixed_batch", "offline")
SCENARIOS = CLOSED_LOOP

# Short defaults so the demo finishes in minutes on 2 cores; --full is a flag away.
DEMO_STOP = {"min_queries": 200, "min_duration_s": 1.0, "max_duration_s": 10.0, "warmup_queries": 20}
FULL_STOP = {"min_queries": 1024, "min_duration_s": 60.0, "max_duration_s": 600.0, "warmup_queries": 100}


@dataclass(frozen=True)
class StopRule:
    """Stop only after both minimums are met, and never later than the cap."""

    min_queries: int = DEMO_STOP["min_queries"]
    min_duration_s: float = DEMO_STOP["min_duration_s"]
    max_duration_s: float = DEMO_STOP["max_duration_s"]

    def validate(self) -> None:
        if self.min_queries < 1:
            raise ScenarioError(f"min_queries must be >= 1, got {self.min_queries}")
        if self.min_duration_s < 0:
            raise ScenarioError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if self.max_duration_s <= 0:
            raise ScenarioError(f"max_duration_s must be > 0, got {self.max_duration_s}")
        if self.min_duration_s > self.max_duration_s:
            raise ScenarioError(f"min_duration_s ({self.min_duration_s}) is above max_duration_s "
                                f"({self.max_duration_s}); raise --max-duration or lower --min-duration")


@dataclass(frozen=True)
class ScenarioConfig:
    name: str
    batch_size: int = 1
    warmup_queries: int = DEMO_STOP["warmup_queries"]
    stop: StopRule = field(default_factory=StopRule)
    seed: int = 0

    def validate(self) -> "ScenarioConfig":
        if self.name not in SCENARIOS:
            raise ScenarioError(f"unknown scenario {self.name!r}; known scenarios: {', '.join(SCENARIOS)}")
        if self.batch_size < 1:
            raise ScenarioError(f"scenario {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if self.name == "single_stream" and self.batch_size != 1:
            raise ScenarioError("scenario 'single_stream' sends one instance per query; use fixed_batch for --batch-size")
        if self.warmup_queries < 0:
            raise ScenarioError(f"warmup_queries must be >= 0, got {self.warmup_queries}")
        self.stop.validate()
        return self

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> "ScenarioConfig":
        d = dict(d)
        d["stop"] = StopRule(**d.get("stop", {}))
        return cls(**d)


def make_scenario(name: str, *, batch_size: int | None = None, full: bool = False, seed: int = 0,
                  **overrides: Any) -> ScenarioConfig:
    """Build and validate a scenario config from CLI-level options (None means default)."""
    base = FULL_STOP if full else DEMO_STOP
    stop = StopRule(**{k: base[k] for k in ("min_queries", "min_duration_s", "max_duration_s")})
    stop = replace(stop, **{k: v for k, v in overrides.items() if k in ("min_queries", "min_duration_s", "max_duration_s") and v is not None})
    warm = overrides.get("warmup_queries")
    if name == "offline":  # one query is a whole pass over the data set
        stop = replace(stop, min_queries=overrides.get("min_queries") or 3)
        warm = 1 if warm is None else warm
    if batch_size is None:
        batch_size = 8 if name == "fixed_batch" else 1
    cfg = ScenarioConfig(name=name, batch_size=batch_size,
                         warmup_queries=base["warmup_queries"] if warm is None else warm, stop=stop, seed=seed)
    return cfg.validate()


def build_schedule(cfg: ScenarioConfig, n_instances: int) -> list[np.ndarray]:
    """One cycle of queries as arrays of instance indices, in a fixed seeded order.

    The worker cycles over this list until the stop rule holds, so the instance order is the
    same on every profile and every trial with the same seed.
    """
    if n_instances < 1:
        raise ScenarioError("the task has no instances")
    order = np.random.default_rng(cfg.seed).permutation(n_instances)
    if cfg.name == "offline":
        return [order]
    b = cfg.batch_size
    n_queries = -(-n_instances // b)
    idx = np.resize(order, n_queries * b)  # wrap around so every query has exactly b instances
    return [idx[i * b:(i + 1) * b] for i in range(n_queries)]
