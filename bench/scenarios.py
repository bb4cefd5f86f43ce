"""Scenarios: load generation. A scenario only produces a schedule of queries, their arrival
times where the loop is open, and a stop rule; timing lives in ``runners/loadgen.py`` (after
MLPerf LoadGen's split between scenario and SUT).

| name            | queries                                   | loop                         |
|-----------------|-------------------------------------------|------------------------------|
| single_stream   | one instance                              | closed                       |
| fixed_batch     | B instances                               | closed                       |
| poisson_batch   | Poisson(lambda) instances, at least 1     | closed (Pentathlon)          |
| offline         | the whole data set                        | closed                       |
| server          | one instance, Poisson arrivals at a QPS   | open, queue + dynamic batch  |
| batch_sweep     | one instance (timed pass), then b = 1, 2, 4, ... up to --max-batch | closed (framework tax) |
| generate        | one prompt, tokens streamed back          | closed (single stream, --concurrency N) or open (--rate R) |

batch_sweep's timed pass is single_stream's; the sweep and the profiled pass that follow it
live in runners/sweep.py (docs/framework-tax.md). generate's loops, its SLO search and its
rate sweep live in runners/generate.py (docs/generate.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from heptathlon.bench.errors import ScenarioError

CLOSED_LOOP = ("single_stream", "fixed_batch", "poisson_batch", "offline")
OPEN_LOOP = ("server",)
SWEEPS = ("batch_sweep",)
GENERATIVE = ("generate",)
SCENARIOS = CLOSED_LOOP + OPEN_LOOP + SWEEPS + GENERATIVE

# Short defaults so the demo finishes in minutes on 2 cores; --full is a flag away.
DEMO_STOP = {"min_queries": 200, "min_duration_s": 1.0, "max_duration_s": 10.0, "warmup_queries": 20}
FULL_STOP = {"min_queries": 1024, "min_duration_s": 60.0, "max_duration_s": 600.0, "warmup_queries": 100}

DEFAULT_POISSON_LAMBDA = 8.0
DEFAULT_QPS = 100.0
DEFAULT_CI_TARGET = 0.01  # adaptive stopping: 95% CI half-width of the median within 1% of it
DEFAULT_SWEEP_MAX_BATCH = 64  # batch_sweep: b = 1, 2, 4, ... 64 keeps the demo within minutes on 2 cores
DEFAULT_SWEEP_REPEATS = {"demo": 10, "full": 30}  # batch_sweep: timed (and profiled) calls per batch size
# generate: requests per measured pass (min_queries), warm-up requests, and the duration cap of one pass
GENERATE_STOP = {"demo": {"min_queries": 16, "min_duration_s": 0.0, "max_duration_s": 60.0, "warmup_queries": 2},
                 "full": {"min_queries": 128, "min_duration_s": 0.0, "max_duration_s": 600.0, "warmup_queries": 4}}
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_GENERATE_MAX_BATCH = 8  # generate: the most requests one model call decodes together (transformers kind)
DEFAULT_SWEEP_RATES = 3  # generate --sweep: evenly spaced rates between synchronous and throughput
# Options that belong to one scenario; giving them to another is an error, not a silent no-op.
SCENARIO_OPTIONS = {"poisson_lambda": ("poisson_batch",), "qps": ("server",),
                    "max_batch": ("server", "batch_sweep", "generate"),
                    "max_wait_ms": ("server",), "slo_ms": ("server",), "repeats": ("batch_sweep",),
                    "runtimes": ("batch_sweep",), "seq_lengths": ("batch_sweep",),
                    "concurrency": ("generate",), "rate": ("generate",), "max_new_tokens": ("generate",),
                    "ignore_eos": ("generate",), "ttft_slo_ms": ("generate",), "tpot_slo_ms": ("generate",),
                    "sweep": ("generate",)}
_FLAGS = {"poisson_lambda": "--lambda", "qps": "--qps", "max_batch": "--max-batch", "max_wait_ms": "--max-wait-ms",
          "slo_ms": "--slo-ms", "repeats": "--repeats", "runtimes": "--runtimes", "seq_lengths": "--seq-lengths",
          "concurrency": "--concurrency", "rate": "--rate", "max_new_tokens": "--max-new-tokens",
          "ignore_eos": "--ignore-eos", "ttft_slo_ms": "--ttft-slo-ms", "tpot_slo_ms": "--tpot-slo-ms",
          "sweep": "--sweep"}
# generate's own fields: left out of to_params() when unset, so the series keys of every other run stay as they were
GENERATE_FIELDS = ("concurrency", "rate", "max_new_tokens", "ignore_eos", "ttft_slo_ms", "tpot_slo_ms", "sweep")


@dataclass(frozen=True)
class StopRule:
    """Stop only after both minimums are met, and never later than the cap.

    ``adaptive``: once the minimums hold, go on until the 95% CI half-width of the median
    latency is within ``ci_target`` (relative), checked at every power-of-two query count.
    """

    min_queries: int = DEMO_STOP["min_queries"]
    min_duration_s: float = DEMO_STOP["min_duration_s"]
    max_duration_s: float = DEMO_STOP["max_duration_s"]
    adaptive: bool = False
    ci_target: float = DEFAULT_CI_TARGET

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
        if not 0 < self.ci_target < 1:
            raise ScenarioError(f"--ci-target must be a relative half-width in (0, 1), e.g. 0.01; got {self.ci_target}")


@dataclass(frozen=True)
class ScenarioConfig:
    name: str
    batch_size: int = 1
    warmup_queries: int = DEMO_STOP["warmup_queries"]
    stop: StopRule = field(default_factory=StopRule)
    seed: int = 0
    poisson_lambda: float | None = None  # poisson_batch: mean batch size
    qps: float | None = None  # server: target queries per second (the search's start with an SLO)
    max_batch: int = 1  # server: dynamic batching, at most this many queries per model call; batch_sweep: the cap
    max_wait_ms: float = 0.0  # server: how long the oldest queued query may wait for a batch to fill
    slo_ms: float | None = None  # server: p99 latency SLO; search for the largest QPS within it
    repeats: int | None = None  # batch_sweep: timed and profiled calls per batch size
    runtimes: tuple[str, ...] | None = None  # batch_sweep: runtimes derived from a torch model; None = all that apply
    # batch_sweep on a text task (kind transformers): the sequence lengths swept, each at every batch
    # size; None = one length, the task's longest. Left out of to_params() when None, so the series
    # keys of every other run stay what they were.
    seq_lengths: tuple[int, ...] | None = None
    # generate (runners/generate.py): closed loop at one request in flight by default; --concurrency N
    # keeps N in flight; --rate R is Poisson arrivals at R requests/s (latency from the scheduled
    # arrival). Greedy decoding, max_new_tokens per request, EOS ignored on request.
    concurrency: int | None = None
    rate: float | None = None
    max_new_tokens: int | None = None
    ignore_eos: bool | None = None
    ttft_slo_ms: float | None = None  # with tpot_slo_ms: search the largest rate meeting both at p99
    tpot_slo_ms: float | None = None
    sweep: bool | None = None  # synchronous, throughput, then evenly spaced rates between (guidellm)

    @property
    def generate_mode(self) -> str:
        """single_stream, concurrency or rate (an SLO search is rate mode)."""
        if self.rate is not None or self.ttft_slo_ms is not None:
            return "rate"
        return "concurrency" if (self.concurrency or 1) > 1 else "single_stream"

    def validate(self) -> "ScenarioConfig":
        if self.name not in SCENARIOS:
            raise ScenarioError(f"unknown scenario {self.name!r}; known scenarios: {', '.join(SCENARIOS)}")
        if self.batch_size < 1:
            raise ScenarioError(f"scenario {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if self.name == "single_stream" and self.batch_size != 1:
            raise ScenarioError("scenario 'single_stream' sends one instance per query; use fixed_batch for --batch-size")
        if self.name in ("poisson_batch", "server", "batch_sweep") and self.batch_size != 1:
            what = "--lambda" if self.name == "poisson_batch" else "--max-batch"
            raise ScenarioError(f"scenario {self.name!r} chooses its own batch sizes; use {what} instead of --batch-size")
        if self.warmup_queries < 0:
            raise ScenarioError(f"warmup_queries must be >= 0, got {self.warmup_queries}")
        defaults = {f.name: f.default for f in fields(self)}
        for opt, owners in SCENARIO_OPTIONS.items():
            if self.name not in owners and getattr(self, opt) != defaults[opt]:
                if opt == "slo_ms":
                    raise ScenarioError(f"an SLO (--slo-ms) applies only to the server scenario, not {self.name!r}")
                raise ScenarioError(f"{_FLAGS[opt]} applies only to the {' or '.join(owners)} scenario, not {self.name!r}")
        if self.poisson_lambda is not None and not self.poisson_lambda > 0:
            raise ScenarioError(f"scenario 'poisson_batch': --lambda (mean batch size) must be > 0, got {self.poisson_lambda}")
        if self.qps is not None and not self.qps > 0:
            raise ScenarioError(f"scenario 'server': --qps must be > 0, got {self.qps}")
        if self.max_batch < 1:
            raise ScenarioError(f"scenario {self.name!r}: --max-batch must be >= 1, got {self.max_batch}")
        if self.repeats is not None and self.repeats < 2:
            raise ScenarioError(f"scenario 'batch_sweep': --repeats must be >= 2 (a CI needs two calls per batch "
                                f"size), got {self.repeats}")
        if self.seq_lengths is not None and (not self.seq_lengths or any(int(n) < 1 for n in self.seq_lengths)):
            raise ScenarioError(f"scenario 'batch_sweep': --seq-lengths must be positive token counts, "
                                f"got {list(self.seq_lengths)}")
        # The runtime names are checked against the adapter registry where a run is queued
        # (heptathlon.runners.adapters.registry.validate_runtime_names): the core knows no runtimes.
        if self.max_wait_ms < 0:
            raise ScenarioError(f"scenario 'server': --max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.max_wait_ms > 0 and self.max_batch == 1:
            raise ScenarioError("scenario 'server': --max-wait-ms needs --max-batch above 1 (there is no batch to fill)")
        if self.slo_ms is not None and not self.slo_ms > 0:
            raise ScenarioError(f"scenario 'server': --slo-ms must be > 0, got {self.slo_ms}")
        if self.name == "generate":
            self._validate_generate()
        self.stop.validate()
        return self

    def _validate_generate(self) -> None:
        if self.batch_size != 1:
            raise ScenarioError("scenario 'generate' sends one prompt per request; use --concurrency N for "
                                "requests in flight together, not --batch-size")
        if self.concurrency is not None and self.concurrency < 1:
            raise ScenarioError(f"scenario 'generate': --concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise ScenarioError(f"scenario 'generate': --rate must be > 0 requests/s, got {self.rate}")
        if self.concurrency is not None and self.rate is not None:
            raise ScenarioError("scenario 'generate': --concurrency (closed loop) and --rate (Poisson arrivals) "
                                "are two load modes; give one")
        if (self.ttft_slo_ms is None) != (self.tpot_slo_ms is None):
            raise ScenarioError("scenario 'generate': the SLO bounds TTFT and TPOT together; give both "
                                "--ttft-slo-ms and --tpot-slo-ms")
        for flag, v in (("--ttft-slo-ms", self.ttft_slo_ms), ("--tpot-slo-ms", self.tpot_slo_ms)):
            if v is not None and not v > 0:
                raise ScenarioError(f"scenario 'generate': {flag} must be > 0, got {v}")
        if self.ttft_slo_ms is not None and self.concurrency is not None:
            raise ScenarioError("scenario 'generate': an SLO search varies the arrival rate; drop --concurrency")
        if self.max_new_tokens is None or not 1 <= self.max_new_tokens <= 4096:
            raise ScenarioError(f"scenario 'generate': --max-new-tokens must be in [1, 4096], got {self.max_new_tokens}")

    @property
    def target_qps(self) -> float:
        return self.qps if self.qps is not None else DEFAULT_QPS

    @property
    def mean_batch(self) -> float:
        return self.poisson_lambda if self.poisson_lambda is not None else DEFAULT_POISSON_LAMBDA

    def to_params(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("seq_lengths", *GENERATE_FIELDS):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> "ScenarioConfig":
        d = dict(d)
        d["stop"] = StopRule(**d.get("stop", {}))
        if d.get("runtimes") is not None:  # a JSON list after a round trip through run.params
            d["runtimes"] = tuple(d["runtimes"])
        if d.get("seq_lengths") is not None:
            d["seq_lengths"] = tuple(int(n) for n in d["seq_lengths"])
        return cls(**d)


def make_scenario(name: str, *, batch_size: int | None = None, full: bool = False, seed: int = 0,
                  **overrides: Any) -> ScenarioConfig:
    """Build and validate a scenario config from CLI-level options (None means default)."""
    base = FULL_STOP if full else DEMO_STOP
    stop_keys = ("min_queries", "min_duration_s", "max_duration_s", "adaptive", "ci_target")
    stop = StopRule(**{k: base[k] for k in ("min_queries", "min_duration_s", "max_duration_s")})
    stop = replace(stop, **{k: v for k, v in overrides.items() if k in stop_keys and v is not None})
    warm = overrides.get("warmup_queries")
    if name == "offline":  # one query is a whole pass over the data set
        stop = replace(stop, min_queries=overrides.get("min_queries") or 3)
        warm = 1 if warm is None else warm
    if batch_size is None:
        batch_size = 8 if name == "fixed_batch" else 1
    if name == "batch_sweep":
        defaults = {"max_batch": DEFAULT_SWEEP_MAX_BATCH, "repeats": DEFAULT_SWEEP_REPEATS["full" if full else "demo"]}
        overrides = {**overrides, **{k: v for k, v in defaults.items() if overrides.get(k) is None}}
        if overrides.get("runtimes") is not None:
            overrides["runtimes"] = tuple(overrides["runtimes"])
    if overrides.get("seq_lengths") is not None:
        overrides = {**overrides, "seq_lengths": tuple(overrides["seq_lengths"])}
    if name == "generate":
        gen = GENERATE_STOP["full" if full else "demo"]
        stop = StopRule(**{k: gen[k] for k in ("min_queries", "min_duration_s", "max_duration_s")})
        stop = replace(stop, **{k: v for k, v in overrides.items() if k in stop_keys and v is not None})
        warm = gen["warmup_queries"] if warm is None else warm
        defaults = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "ignore_eos": False, "sweep": False,
                    "max_batch": DEFAULT_GENERATE_MAX_BATCH}
        overrides = {**overrides, **{k: v for k, v in defaults.items() if overrides.get(k) is None}}
    extra = {k: v for k, v in overrides.items() if k in SCENARIO_OPTIONS and v is not None}
    cfg = ScenarioConfig(name=name, batch_size=batch_size,
                         warmup_queries=base["warmup_queries"] if warm is None else warm, stop=stop, seed=seed,
                         **extra)
    return cfg.validate()


def instance_order(seed: int, n_instances: int) -> np.ndarray:
    """The fixed, seeded instance order every scenario draws from."""
    if n_instances < 1:
        raise ScenarioError("the task has no instances")
    return np.random.default_rng(seed).permutation(n_instances)


def poisson_batch_sizes(lam: float, n: int, seed: int) -> np.ndarray:
    """n batch sizes drawn from Poisson(lam) with a seed; a draw of 0 becomes 1 (a query has an instance).

    A stream separate from the instance order's, so the order is the same as in every other scenario.
    """
    if not lam > 0:
        raise ScenarioError(f"Poisson lambda must be > 0, got {lam}")
    return np.maximum(np.random.default_rng([seed, 1]).poisson(lam, n), 1).astype(np.int64)


def build_schedule(cfg: ScenarioConfig, n_instances: int) -> list[np.ndarray]:
    """One cycle of queries as arrays of instance indices, in a fixed seeded order.

    The loop cycles over this list until the stop rule holds, so the instance order (and for
    poisson_batch the size sequence) is the same on every profile and every trial with the
    same seed. Server queries are single instances, like single_stream's.
    """
    order = instance_order(cfg.seed, n_instances)
    if cfg.name == "offline":
        return [order]
    if cfg.name == "poisson_batch":
        # Enough queries to cover every instance at least once (sizes are >= 1, so
        # n_instances draws always do), and at least 64 so a small data set still gets a
        # spread of sizes.
        sizes = poisson_batch_sizes(cfg.mean_batch, max(64, n_instances), cfg.seed)
        ends = np.cumsum(sizes)
        k = max(64, int(np.searchsorted(ends, n_instances)) + 1)
        sizes, ends = sizes[:k], ends[:k]
        idx = np.resize(order, int(ends[-1]))
        return np.split(idx, ends[:-1])
    b = cfg.batch_size
    n_queries = -(-n_instances // b)
    idx = np.resize(order, n_queries * b)  # wrap around so every query has exactly b instances
    return [idx[i * b:(i + 1) * b] for i in range(n_queries)]


def batch_pool_schedule(cfg: ScenarioConfig, n_instances: int, size: int) -> list[np.ndarray]:
    """Server with dynamic batching: a cycle of batches of exactly ``size`` instances.

    Which queries share a model call depends on timing, so batches are prepared ahead for each
    size from the fixed order; the loop takes the next prepared batch of the size it forms.
    """
    return build_schedule(replace(cfg, name="fixed_batch", batch_size=size, max_batch=1, max_wait_ms=0.0,
                                  qps=None, slo_ms=None), n_instances)


def poisson_arrivals_ns(qps: float, n: int, seed: int) -> np.ndarray:
    """Scheduled arrival offsets (ns from the start) of a Poisson process at ``qps``: n queries.

    Exponential inter-arrival gaps with mean 1/qps, as MLPerf LoadGen's Server scenario. The
    first query arrives after its own gap, not at 0.
    """
    if not qps > 0:
        raise ScenarioError(f"QPS must be > 0, got {qps}")
    gaps = np.random.default_rng([seed, 2]).exponential(1e9 / qps, n)
    return np.cumsum(gaps).astype(np.int64)


def server_query_count(qps: float, stop: StopRule, cap: int = 5_000_000) -> tuple[int, int]:
    """(queries the stop rule needs, queries that fit before the cap) for a server run.

    As in MLPerf, the query set is fixed before the run: enough queries for both minimums
    (the duration counted on scheduled time). Adaptive mode may go on up to the second number.
    """
    need = max(stop.min_queries, int(np.ceil(qps * stop.min_duration_s)) + 1)
    most = max(need, int(np.ceil(qps * stop.max_duration_s * 1.05)) + 16)
    return min(need, cap), min(most, cap)
