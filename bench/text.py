"""Per-query text metrics, computed in the parent from the worker's raw arrays: tokens/s and
words/s beside samples/s, and tokenisation time (DESIGN.md "Metric names added").

Token counts come from the submission's own tokenizer (one count per task instance, padding
excluded); word counts are whitespace words of the task's text, counted here. A closed-loop
scenario's queries follow ``build_schedule``, so the instances each query carried are known
exactly and the window's token total is exact. Under server, queries draw from a pool whose
order the loop does not record, so the total is throughput times the mean count per instance,
and the method says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.scenarios import ScenarioConfig, build_schedule
from heptathlon.bench.stats import bootstrap_ci


def word_counts(x_test: np.ndarray) -> np.ndarray:
    """Whitespace words per instance of a text task ((n,) strings, or (n, 2) pairs summed)."""
    a = np.asarray(x_test)
    if a.ndim == 1:
        a = a[:, None]
    return np.array([sum(len(str(t).split()) for t in row) for row in a], dtype=np.int64)


def _per_query(counts: np.ndarray, cfg: ScenarioConfig, batch: np.ndarray) -> np.ndarray | None:
    """Counts per query from the closed-loop schedule; None where the loop's sizes do not follow it."""
    if cfg.name == "server":
        return None
    schedule = build_schedule(cfg, len(counts))
    k = len(schedule)
    per = np.array([int(counts[idx].sum()) for idx in schedule], dtype=np.int64)
    sizes = np.array([len(idx) for idx in schedule], dtype=np.int64)
    q = np.arange(len(batch)) % k
    if not np.array_equal(sizes[q], np.asarray(batch, dtype=np.int64)):
        return None
    return per[q]


def rate(name: str, counts: np.ndarray, cfg: ScenarioConfig, batch: np.ndarray, throughput: MetricValue,
         what: str) -> MetricValue:
    """``name`` (tokens_per_s or words_per_s): counted units over the throughput's timed window."""
    window_s = (throughput.params or {}).get("window_s")
    if not window_s or throughput.value is None or len(counts) == 0:
        return MetricValue.unavailable(name, "no timed window to divide by")
    per_query = _per_query(np.asarray(counts), cfg, batch)
    if per_query is not None:
        total = float(per_query.sum())
        value = total / window_s
        method = f"derived:{what}/window"
    else:
        mean = float(np.mean(counts))
        value = throughput.value * mean
        total = mean * float(np.sum(batch))
        method = f"derived:throughput*mean-{what}"
    ci_lo = ci_hi = None
    if throughput.ci_low is not None and throughput.ci_high is not None and throughput.value:
        scale = value / throughput.value  # the window's relative uncertainty, carried over
        ci_lo, ci_hi = throughput.ci_low * scale, throughput.ci_high * scale
    return MetricValue(name, value, method, n=throughput.n, ci_low=ci_lo, ci_high=ci_hi,
                       params={"window_s": window_s, "total": total,
                               "per_instance_mean": float(np.mean(counts))})


def tokenize_time(tokenize_ns: Sequence[int], *, seed: int = 0) -> MetricValue:
    """Median tokenisation time per prepared query (ms) with a bootstrap CI."""
    ms = np.asarray(tokenize_ns, dtype=np.int64) / 1e6
    if ms.size == 0:
        return MetricValue.unavailable("tokenize_ms", "no query was tokenised")
    lo, hi = bootstrap_ci(ms, lambda a, axis=-1: np.median(a, axis=axis), seed=seed)
    return MetricValue("tokenize_ms", float(np.median(ms)), "timer:perf_counter_ns", n=int(ms.size),
                       ci_low=lo, ci_high=hi,
                       note="per prepared query, in the model process, outside the timed model call")


def text_values(*, x_test: np.ndarray, input_type: str, tokens: np.ndarray | None,
                tokenize_ns: np.ndarray | None, cfg: ScenarioConfig, batch: np.ndarray,
                throughput: MetricValue | None) -> list[MetricValue]:
    """tokens_per_s, words_per_s and tokenize_ms for a text or token task (empty for features)."""
    if input_type == "features" or throughput is None:
        return []
    out = []
    if tokens is not None and len(tokens) == len(x_test):
        out.append(rate("tokens_per_s", tokens, cfg, batch, throughput, "tokens"))
    else:
        out.append(MetricValue.unavailable("tokens_per_s", "the model reported no token counts (a command "
                                           "submission tokenises inside its own process)"))
    if input_type == "text":
        out.append(rate("words_per_s", word_counts(x_test), cfg, batch, throughput, "words"))
    if tokenize_ns is not None and len(tokenize_ns):
        out.append(tokenize_time(tokenize_ns))
    return out
