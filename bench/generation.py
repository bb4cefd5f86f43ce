"""The generate scenario's arithmetic (docs/generate.md): per-request token traces, the checks a
streamed answer must pass, and TTFT/ITL/TPOT/e2e/throughput with n, method and 95% CIs.

Pure: the harness stamps each streamed line on receipt (runners/stream.py) and hands the stamps
here; nothing in this module reads a clock or talks to a submission.

Definitions follow the peers, and name where they differ:
- TTFT: arrival (the scheduled arrival under Poisson load) to the first streamed token (MLPerf
  Inference LLM, guidellm, vLLM ``benchmark_serving``).
- ITL: every gap between consecutive tokens of a request, pooled over all requests (vLLM's ITL).
  guidellm's "ITL" is the per-request mean gap, which is what MLPerf and vLLM call TPOT.
- TPOT: per request, (e2e - ttft) / (output tokens - 1); a request with one token has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError
from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.stats import percentile_ci

METHOD = "timer:perf_counter_ns"
MAX_TOKENS_PER_LINE = 4096  # a "tokens" list longer than this in one line is absurd, not a batch
MAX_PROMPT_TOKENS = 10_000_000
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


@dataclass
class RequestTrace:
    """One request as the harness saw it: when it arrived, and when each token and the answer came."""

    id: int
    arrival_ns: int  # scheduled arrival (open loop) or issue time (closed loop)
    prompt_tokens: int
    token_ns: list[int] = field(default_factory=list)  # one stamp per streamed token, in order
    final_ns: int | None = None
    output_tokens: int | None = None  # the count the final answer declares
    text: str | None = None
    prompt_tokens_declared: bool = False  # the submission's final answer said its prompt token count

    @property
    def done(self) -> bool:
        return self.final_ns is not None

    @property
    def ttft_ns(self) -> int:
        return self.token_ns[0] - self.arrival_ns

    @property
    def e2e_ns(self) -> int:
        assert self.final_ns is not None
        return self.final_ns - self.arrival_ns

    @property
    def gaps_ns(self) -> np.ndarray:
        return np.diff(np.asarray(self.token_ns, dtype=np.int64))

    @property
    def tpot_ns(self) -> float | None:
        k = len(self.token_ns)
        return None if k < 2 else (self.token_ns[-1] - self.token_ns[0]) / (k - 1)


class StreamState:
    """The harness side of the streaming protocol's rules, line by line (DESIGN.md, "Stdio protocol,
    streaming extension"). ``issue`` a request before its bytes can be answered; ``on_line`` takes
    one parsed line and its receipt stamp. Every violation is a ModelError naming the request id."""

    def __init__(self, submission: str, *, max_new_tokens: int, closed: set[int] | None = None) -> None:
        self.submission = submission
        self.max_new_tokens = max_new_tokens
        self.traces: dict[int, RequestTrace] = {}
        self._order: list[int] = []
        # ids answered in earlier passes of the same model process: a line for one of them arrived
        # after its final answer, whichever pass reads it (a late line can cross a pass boundary)
        self.closed = closed if closed is not None else set()

    def _fail(self, rid: Any, what: str) -> ModelError:
        return ModelError(f"submission {self.submission!r}, request {rid}: {what}")

    def issue(self, rid: int, arrival_ns: int, prompt_tokens: int) -> None:
        if rid in self.traces:
            raise ValueError(f"request {rid} issued twice")  # a harness bug, not the submission's
        self.traces[rid] = RequestTrace(rid, arrival_ns, prompt_tokens)
        self._order.append(rid)

    def on_line(self, msg: Any, t_ns: int) -> RequestTrace | None:
        """Apply one line; returns the trace when this line was its final answer."""
        if not isinstance(msg, dict) or "id" not in msg:
            raise ModelError(f"submission {self.submission!r}: a stdout line is not a protocol message "
                             f"(an object with an 'id'): {str(msg)[:80]}")
        rid = msg["id"]
        if isinstance(rid, int) and not isinstance(rid, bool) and rid in self.closed and rid not in self.traces:
            raise self._fail(rid, "streamed after its final answer")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid not in self.traces:
            raise self._fail(rid, "answered an id that was never sent (out of order, or an answer byte "
                                  "arrived before its request was sent)")
        tr = self.traces[rid]
        if tr.done:
            raise self._fail(rid, "streamed after its final answer")
        if "token" in msg or "tokens" in msg:
            if "outputs" in msg:
                raise self._fail(rid, "a line carries both tokens and the final 'outputs'; stream tokens first")
            n = self._count(rid, msg)
            if len(tr.token_ns) + n > self.max_new_tokens:
                raise self._fail(rid, f"streamed more than max_new_tokens={self.max_new_tokens} tokens")
            tr.token_ns.extend([t_ns] * n)
            return None
        if "outputs" not in msg:
            raise self._fail(rid, "a line has neither 'token'/'tokens' nor the final 'outputs'")
        outputs = msg["outputs"]
        if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], str):
            raise self._fail(rid, "'outputs' must be a list of one generated string")
        if "prompt_tokens" in msg:  # a command submission may say how many tokens its tokenizer made
            pt = msg["prompt_tokens"]
            if not isinstance(pt, int) or isinstance(pt, bool) or not 0 <= pt <= MAX_PROMPT_TOKENS:
                raise self._fail(rid, f"'prompt_tokens' must be an integer in [0, {MAX_PROMPT_TOKENS}], got {pt!r}")
            tr.prompt_tokens = pt
            tr.prompt_tokens_declared = True
        count = msg.get("output_tokens", len(tr.token_ns))
        if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > self.max_new_tokens:
            raise self._fail(rid, f"'output_tokens' must be an integer in [0, {self.max_new_tokens}], got {count!r}")
        if count != len(tr.token_ns):
            raise self._fail(rid, f"the final answer says {count} output tokens but {len(tr.token_ns)} were streamed")
        if not tr.token_ns:
            raise self._fail(rid, "answered without streaming a token; the generate scenario needs "
                                  "{\"id\": N, \"token\": ...} lines before the final answer (runners/stdio.py serve_generate)")
        tr.final_ns, tr.output_tokens, tr.text = t_ns, count, outputs[0]
        return tr

    def _count(self, rid: int, msg: dict) -> int:
        if "token" in msg:
            if not isinstance(msg["token"], str):
                raise self._fail(rid, f"'token' must be a string, got {type(msg['token']).__name__}")
            return 1
        toks = msg["tokens"]
        if not isinstance(toks, list) or not toks or len(toks) > MAX_TOKENS_PER_LINE \
                or not all(isinstance(t, str) for t in toks):
            raise self._fail(rid, f"'tokens' must be a non-empty list of at most {MAX_TOKENS_PER_LINE} strings")
        return len(toks)

    def finished(self) -> list[RequestTrace]:
        """Every issued request, in issue order; a request still open is an error naming it."""
        open_ = [rid for rid in self._order if not self.traces[rid].done]
        if open_:
            raise self._fail(open_[0], f"never sent its final answer ({len(open_)} request(s) open)")
        return [self.traces[rid] for rid in self._order]


def _ms(ns) -> np.ndarray:
    return np.asarray(ns, dtype=float) / 1e6


def _percentiles(prefix: str, values_ms: np.ndarray, keys=("p50", "p90", "p99"), seed: int = 0) -> list[MetricValue]:
    out = []
    for k in keys:
        name = f"{prefix}_{k}_ms"
        if values_ms.size == 0:
            out.append(MetricValue.unavailable(name, "no samples (every request produced a single token)"))
            continue
        lo, hi = percentile_ci(values_ms, PERCENTILES[k], seed=seed)
        out.append(MetricValue(name, float(np.percentile(values_ms, PERCENTILES[k])), METHOD,
                               n=int(values_ms.size), ci_low=lo, ci_high=hi))
    return out


def _rate(name: str, counts: np.ndarray, finals_ns: np.ndarray, window_start_ns: int, seed: int) -> MetricValue:
    """count / window. The CI resamples completions as (count, the time since the previous completion)
    pairs: sum of counts over sum of gaps, so it carries the timing spread, not only the counts'.
    Requests answered at one stamp (a batch's cohort, or answers that arrived in one read) are one
    completion: resampling them apart would mix zero gaps with whole-cohort gaps."""
    order = np.argsort(finals_ns, kind="stable")
    c = np.asarray(counts, dtype=float)[order]
    f = np.asarray(finals_ns, dtype=np.int64)[order]
    stamps, first = np.unique(f, return_index=True)
    c = np.add.reduceat(c, first) if c.size else c
    gaps = np.diff(np.concatenate([[window_start_ns], stamps])) / 1e9
    window_s = float(gaps.sum())
    from heptathlon.bench.stats import bootstrap_ci

    lo, hi = (None, None)
    if c.size >= 2:
        lo, hi = bootstrap_ci((c, gaps), lambda a, b, axis=-1: np.sum(a, axis=axis) / np.sum(b, axis=axis),
                              paired=True, seed=seed)
    return MetricValue(name, float(c.sum()) / window_s, METHOD, n=int(len(counts)), ci_low=lo, ci_high=hi)


def union_s(starts: np.ndarray, ends: np.ndarray, axis: int = -1) -> np.ndarray:
    """Length of the union of the intervals [starts, ends) along ``axis`` (vectorised over the rest)."""
    order = np.argsort(starts, axis=axis)
    s = np.take_along_axis(starts, order, axis=axis)
    e = np.take_along_axis(ends, order, axis=axis)
    reach = np.maximum.accumulate(e, axis=axis)  # the furthest end so far
    prev = np.concatenate([np.full_like(np.take(reach, [0], axis=axis), -np.inf),
                           np.delete(reach, -1, axis=axis)], axis=axis)
    return np.sum(np.clip(e - np.maximum(s, prev), 0, None), axis=axis)


def shared_time_s(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each interval's share of the time covered by the intervals, split evenly among those open at
    each moment (processor sharing). The shares sum to the union's length, and resampling requests
    resamples their shares: a bootstrap of sum(tokens) / sum(share) stays centred on the value."""
    starts, ends = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
    pts = np.unique(np.concatenate([starts, ends]))
    open_ = np.searchsorted(np.sort(starts), pts, side="right") - np.searchsorted(np.sort(ends), pts, side="right")
    dt = np.diff(pts)
    w = np.divide(dt, open_[:-1], out=np.zeros_like(dt), where=open_[:-1] > 0)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    return cum[np.searchsorted(pts, ends)] - cum[np.searchsorted(pts, starts)]


def summarize_generation(traces: list[RequestTrace], window_start_ns: int, window_end_ns: int, *,
                         energy_net_j: float | None = None, energy_method: str | None = None,
                         seed: int = 0) -> list[MetricValue]:
    """Every generate metric of one measured pass. ``traces`` are finished requests of the timed
    window (warm-up left out); the window runs from the first arrival to the last answer."""
    if not traces:
        raise ValueError("no finished requests to summarise")
    window_s = (window_end_ns - window_start_ns) / 1e9
    if window_s <= 0:
        raise ValueError("the timed window is empty")
    ttft = _ms([t.ttft_ns for t in traces])
    e2e = _ms([t.e2e_ns for t in traces])
    itl = _ms(np.concatenate([t.gaps_ns for t in traces]) if traces else [])
    tpot = _ms([t.tpot_ns for t in traces if t.tpot_ns is not None])
    out_tokens = np.array([len(t.token_ns) for t in traces], dtype=float)
    prompt_tokens = np.array([t.prompt_tokens for t in traces], dtype=float)
    out: list[MetricValue] = []
    out += _percentiles("ttft", ttft, seed=seed)
    out += _percentiles("itl", itl, seed=seed)
    if tpot.size:
        lo, hi = percentile_ci(tpot, 50.0, seed=seed)
        out.append(MetricValue("tpot_ms", float(np.median(tpot)), METHOD, n=int(tpot.size), ci_low=lo, ci_high=hi))
    else:
        out.append(MetricValue.unavailable("tpot_ms", "every request produced a single token"))
    out += _percentiles("e2e", e2e, keys=("p50", "p99"), seed=seed)
    finals = np.array([t.final_ns for t in traces], dtype=np.int64)
    out.append(_rate("output_tokens_per_s", out_tokens, finals, window_start_ns, seed))
    out.append(_rate("requests_per_s", np.ones(len(traces)), finals, window_start_ns, seed))
    decode_s = np.array([(t.final_ns - t.token_ns[0]) / 1e9 for t in traces])
    per_user = out_tokens[decode_s > 0] / decode_s[decode_s > 0]
    if per_user.size:
        lo, hi = percentile_ci(per_user, 50.0, seed=seed)
        out.append(MetricValue("output_tokens_per_s_per_request", float(np.median(per_user)), METHOD,
                               n=int(per_user.size), ci_low=lo, ci_high=hi))
    else:
        out.append(MetricValue.unavailable("output_tokens_per_s_per_request", "no request decoded for a measurable time"))
    from heptathlon.bench.stats import bootstrap_ci

    arrive = np.array([t.arrival_ns for t in traces], dtype=float) / 1e9
    first = np.array([t.token_ns[0] for t in traces], dtype=float) / 1e9
    share = shared_time_s(arrive, first)  # sums to the union of the [arrival, first token) intervals
    lo, hi = bootstrap_ci((prompt_tokens, share), lambda a, b, axis=-1: np.sum(a, axis=axis) / np.sum(b, axis=axis),
                          paired=True, seed=seed)
    out.append(MetricValue("prefill_tokens_per_s", float(prompt_tokens.sum() / share.sum()), METHOD,
                           n=len(traces), ci_low=lo, ci_high=hi,
                           note="prompt tokens over the time some request waited for its first token: a cohort "
                                "prefilled together counts once (optimum-benchmark's batch x length / prefill)"))
    if energy_net_j is None:
        out.append(MetricValue.unavailable("energy_per_token_j", "no energy counter or estimate for this run"))
    else:
        out.append(MetricValue("energy_per_token_j", energy_net_j / float(out_tokens.sum()),
                               energy_method or "estimate:unknown", n=int(out_tokens.sum())))
    return out


def sample_arrays(traces: list[RequestTrace]) -> dict[str, np.ndarray]:
    """The raw arrays a generate run stores (bench.metrics.SampleKind), per request in order."""
    return {
        "ttft_ns": np.array([t.ttft_ns for t in traces], dtype=np.int64),
        "itl_ns": np.concatenate([t.gaps_ns for t in traces]).astype(np.int64),
        "e2e_ns": np.array([t.e2e_ns for t in traces], dtype=np.int64),
        "prompt_tokens": np.array([t.prompt_tokens for t in traces], dtype=np.int64),
        "output_tokens": np.array([len(t.token_ns) for t in traces], dtype=np.int64),
    }


# ---- labels and the sweep's stored metrics (the CLI, the dashboard and storage share them) ---------
# The metrics stored per sweep point (detail rows, params {"sweep": true, "sweep_point": i, ...}).
SWEEP_METRICS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "tpot_ms", "e2e_p50_ms",
                 "output_tokens_per_s", "output_tokens_per_s_per_request", "requests_per_s")


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def load_label(params: Any) -> str:
    """The load a generate run was measured under, from its scenario parameters (run.params):
    ``single stream · 16 new tokens``, ``concurrency 4 · 16 new tokens``, ``rate 5 req/s · …``,
    ``sweep · SLO p99 TTFT ≤ 40 ms, p99 TPOT ≤ 3 ms · 16 new tokens``. Runs under different loads
    are not ranked against each other."""
    p = params or {}
    parts = []
    if p.get("sweep"):
        parts.append("sweep")
    if not _missing(p.get("rate")):
        parts.append(f"rate {float(p['rate']):g} req/s")
    elif not _missing(p.get("concurrency")) and int(p["concurrency"]) != 1:
        parts.append(f"concurrency {int(p['concurrency'])}")
    elif not p.get("sweep") and p.get("ttft_slo_ms") is None and p.get("tpot_slo_ms") is None:
        parts.append("single stream")
    slo = [f"p99 {name} ≤ {float(p[k]):g} ms" for name, k in (("TTFT", "ttft_slo_ms"), ("TPOT", "tpot_slo_ms"))
           if p.get(k) is not None]
    if slo:
        parts.append("SLO " + ", ".join(slo))
    if p.get("max_new_tokens") is not None:
        parts.append(f"{int(p['max_new_tokens'])} new tokens" + (" (EOS ignored)" if p.get("ignore_eos") else ""))
    return " · ".join(parts) or "default load"


def point_label(mode: Any, rate: Any = None, concurrency: Any = None) -> str:
    """A sweep point or SLO probe as a short label: ``single stream``, ``throughput``, ``rate 75.2/s``."""
    mode = str(mode or "")
    if mode == "rate" and not _missing(rate):
        return f"rate {float(rate):.3g}/s"
    if mode == "concurrency" and not _missing(concurrency):
        return f"concurrency {int(concurrency)}"
    return mode.replace("_", " ") or "?"
