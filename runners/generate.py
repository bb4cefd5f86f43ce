"""The generate scenario's driver (docs/generate.md): it issues prompts, stamps every streamed
token when it reaches the harness, and hands the stamps to ``heptathlon.bench.generation``.

One thread and one clock (``perf_counter_ns``), owned here. Two backends answer the same
protocol-shaped events:

- ``kind: transformers`` causal LMs: :class:`~heptathlon.runners.adapters.causal_lm.CausalLMEngine`
  in this process (data, no code), stepped one model call at a time; each step's tokens are
  stamped when the step returns.
- ``kind: command``: :class:`CommandStream` writes ``{"id": N, "inputs": ["<prompt>"],
  "max_new_tokens": K, "ignore_eos": b}`` lines to the sandboxed submission and reads its
  ``{"id": N, "token": ...}`` / ``{"id": N, "outputs": [...]}`` lines; every line is stamped
  on receipt (the read that brought it). The submission never sees a clock of ours.

Load modes: ``single_stream`` (one request in flight), ``concurrency`` (N in flight, closed
loop), ``rate`` (Poisson arrivals; latency from the scheduled arrival, as runners/loadgen.py's
server). An SLO search probes rates for the largest one whose p99 TTFT and p99 TPOT meet both
bounds (MLPerf LLM Server); ``--sweep`` runs synchronous, throughput and rates evenly spaced in
between (guidellm). Every pass's raw traces go to the parent, which makes the statistics.
"""

from __future__ import annotations

import json
import os
import select
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError, RunError, SubmissionError
from heptathlon.bench.generation import RequestTrace, StreamState
from heptathlon.bench.scenarios import DEFAULT_SWEEP_RATES, ScenarioConfig, instance_order, poisson_arrivals_ns

SEARCH_STEPS = 4  # bisection steps of the SLO search, after the throughput and lowest-rate probes
LOWEST_RATE_SHARE = 1 / 16  # the SLO search's lowest probe, as a share of the measured throughput rate
POLL_CAP_MS = 1000  # a command backend is polled at least this often (to notice it died)


@dataclass(frozen=True)
class Load:
    """One pass's load: the mode and its parameter, and how many requests."""

    mode: str  # single_stream | concurrency | rate | throughput
    requests: int
    concurrency: int | None = None
    rate: float | None = None

    def record(self) -> dict[str, Any]:
        return {"mode": self.mode, "concurrency": self.concurrency, "rate": self.rate, "requests": self.requests}


# ---- backends -------------------------------------------------------------------------------------
class EngineBackend:
    """A causal LM in this process (kind transformers)."""

    name = "transformers"

    def __init__(self, engine) -> None:
        self.engine = engine
        self.ids: list[list[int]] = []
        self.prompt_lengths: list[int] = []

    def prepare(self, prompts: list[str]) -> None:
        self.ids = self.engine.tokenize(prompts)  # outside timing (tokenize_ms's policy, docs/text.md)
        self.prompt_lengths = [len(i) for i in self.ids]

    def submit(self, rid: int, index: int) -> None:
        self.engine.submit(rid, self.ids[index])

    def wait(self, deadline_ns: int | None) -> list[tuple[dict, int]]:
        return self.engine.step(deadline_ns)

    def finish_pass(self, traces: list[RequestTrace]) -> None:
        texts = self.engine.texts()
        for t in traces:
            t.text = texts.get(t.id, "")
        self.output_ids = {t.id: self.engine.output_ids.get(t.id, []) for t in traces}
        self.engine.output_ids.clear()


class CommandStream:
    """A command submission speaking the streaming extension of the stdio protocol (DESIGN.md)."""

    name = "command"

    def __init__(self, adapter, *, max_new_tokens: int, ignore_eos: bool) -> None:
        from heptathlon.runners.adapters.command import MAX_LINE_BYTES

        self.a = adapter
        self.fd = adapter._r.fd
        self.buf = adapter._r.buf  # anything read after the ready line
        adapter._r.buf = b""
        self.wfd = adapter._wfd
        self.max_line = MAX_LINE_BYTES
        self.tail = b',"max_new_tokens":%d,"ignore_eos":%s}\n' % (max_new_tokens, b"true" if ignore_eos else b"false")
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.prompts: list[bytes] = []
        self.prompt_lengths: list[int | None] = []
        self.output_ids = None

    @property
    def submission(self) -> str:
        return self.a.manifest.name

    def prepare(self, prompts: list[str]) -> None:
        # each request's payload encoded once, outside timing; the text goes as it is (tokenisation
        # is the submission's, inside its measured time, as in Pentathlon)
        self.prompts = [b',"inputs":' + json.dumps([str(p)], separators=(",", ":")).encode() for p in prompts]
        self.prompt_lengths = [None] * len(prompts)

    def submit(self, rid: int, index: int) -> None:
        from heptathlon.runners.stdio import write_all

        try:
            write_all(self.wfd, b'{"id":%d' % rid + self.prompts[index] + self.tail)
        except BrokenPipeError:
            raise RunError(f"submission {self.submission!r}: command exited mid-run with code {self.a.proc.wait()} "
                           f"while request {rid} was being sent") from None

    def wait(self, deadline_ns: int | None) -> list[tuple[dict, int]]:
        if deadline_ns is None:
            timeout = POLL_CAP_MS
        else:
            timeout = min(POLL_CAP_MS, max(0, int((deadline_ns - time.perf_counter_ns()) / 1e6)))
        if not self.poller.poll(timeout):
            if self.a.proc.poll() is not None:
                raise RunError(f"submission {self.submission!r}: command exited mid-run with code "
                               f"{self.a.proc.returncode}")
            return []
        chunk = os.read(self.fd, 1 << 16)
        t = time.perf_counter_ns()  # every line this read brought arrived by now
        if not chunk:
            raise RunError(f"submission {self.submission!r}: command exited mid-run with code {self.a.proc.wait()}")
        buf = self.buf + chunk if self.buf else chunk
        events = []
        start, end = 0, buf.find(b"\n")
        while end >= 0:
            line = buf[start:end]
            start = end + 1
            end = buf.find(b"\n", start)
            if line[:1] != b"{":
                if line.strip():
                    self.a._ignore(line + b"\n")
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise ModelError(f"submission {self.submission!r}: a streamed line is not valid JSON: "
                                 f"{line[:80]!r}") from None
            events.append((msg, t))
        self.buf = buf[start:]
        if len(self.buf) > self.max_line:
            raise RunError(f"submission {self.submission!r}: a stdout line longer than {self.max_line >> 20} MiB; "
                           "that is the cap on one line")
        return events

    def finish_pass(self, traces: list[RequestTrace]) -> None:
        pass


# ---- one pass -------------------------------------------------------------------------------------
class Pass:
    """One measured (or warm-up) pass of ``load`` over the seeded prompt order."""

    def __init__(self, backend, prompts: list[str], load: Load, *, submission: str, max_new_tokens: int,
                 seed: int, max_duration_s: float, first_id: int, closed: set[int] | None = None) -> None:
        self.backend, self.prompts, self.load = backend, prompts, load
        self.state = StreamState(submission, max_new_tokens=max_new_tokens, closed=closed)
        order = instance_order(seed, len(prompts))
        self.indices = np.resize(order, load.requests)
        self.max_duration_ns = int(max_duration_s * 1e9)
        self.first_id = first_id
        self.seed = seed
        self.stopped_by = "requests"

    def run(self) -> dict[str, Any]:
        be, load, state = self.backend, self.load, self.state
        clock = time.perf_counter_ns
        n = load.requests
        limit = {"single_stream": 1, "concurrency": load.concurrency or 1, "throughput": n}.get(load.mode)
        t0 = clock()
        arrivals = t0 + poisson_arrivals_ns(load.rate, n, self.seed) if load.mode == "rate" else None
        issued = done = 0
        cutoff = t0 + self.max_duration_ns
        index_of: dict[int, int] = {}
        while done < issued or issued < n:
            now = clock()
            if issued < n and now > cutoff:
                n = issued  # the duration cap: nothing more is issued; what is in flight finishes
                self.stopped_by = "max_duration"
                continue
            if arrivals is None:
                while issued < n and issued - done < limit:
                    rid = self.first_id + issued
                    state.issue(rid, clock(), 0)
                    be.submit(rid, int(self.indices[issued]))
                    index_of[rid] = int(self.indices[issued])
                    issued += 1
                deadline = None
            else:
                while issued < n and arrivals[issued] <= now:
                    rid = self.first_id + issued
                    state.issue(rid, int(arrivals[issued]), 0)  # latency counts from the scheduled arrival
                    be.submit(rid, int(self.indices[issued]))
                    index_of[rid] = int(self.indices[issued])
                    issued += 1
                deadline = int(arrivals[issued]) if issued < n else None
            if done == issued and deadline is None:
                break
            for msg, t in be.wait(deadline):
                if state.on_line(msg, t) is not None:
                    done += 1
        traces = state.finished()
        state.closed.update(tr.id for tr in traces)  # a later pass names a late line for one of these
        for tr in traces:  # the model's tokenizer (transformers); else the submission's count, else words
            if not tr.prompt_tokens_declared:
                known = be.prompt_lengths[index_of[tr.id]]
                tr.prompt_tokens = known if known is not None else len(self.prompts[index_of[tr.id]].split())
        be.finish_pass(traces)
        ids = getattr(be, "output_ids", None) or {}
        return {**load.record(), "requests": len(traces), "stopped_by": self.stopped_by,
                "window_ns": [min(t.arrival_ns for t in traces), max(t.final_ns for t in traces)],
                "traces": [{"id": t.id, "index": index_of[t.id], "arrival_ns": t.arrival_ns,
                            "prompt_tokens": t.prompt_tokens, "prompt_tokens_declared": t.prompt_tokens_declared,
                            "token_ns": t.token_ns, "final_ns": t.final_ns, "output_tokens": t.output_tokens,
                            "text": t.text, **({"output_ids": ids[t.id]} if t.id in ids else {})} for t in traces]}


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("inf")


def slo_check(p: dict[str, Any], ttft_ms: float, tpot_ms: float) -> tuple[bool, float, float]:
    """(met, p99 TTFT ms, p99 TPOT ms) of one pass."""
    ttft = [(t["token_ns"][0] - t["arrival_ns"]) / 1e6 for t in p["traces"]]
    tpot = [(t["token_ns"][-1] - t["token_ns"][0]) / (len(t["token_ns"]) - 1) / 1e6
            for t in p["traces"] if len(t["token_ns"]) > 1]
    a, b = p99(ttft), (p99(tpot) if tpot else 0.0)
    return a <= ttft_ms and b <= tpot_ms, a, b


def achieved_rate(p: dict[str, Any]) -> float:
    s, e = p["window_ns"]
    return p["requests"] / max((e - s) / 1e9, 1e-9)


class Driver:
    """The passes of one generate run: warm-up, the headline pass (under meters), SLO probes, sweep."""

    def __init__(self, backend, prompts: list[str], cfg: ScenarioConfig, submission: str) -> None:
        self.backend, self.prompts, self.cfg, self.submission = backend, prompts, cfg, submission
        self.next_id = 1
        self.closed: set[int] = set()  # ids of every finished request, across passes
        self.probes: list[dict[str, Any]] = []

    def run_pass(self, load: Load, seed_offset: int = 0) -> dict[str, Any]:
        p = Pass(self.backend, self.prompts, load, submission=self.submission,
                 max_new_tokens=int(self.cfg.max_new_tokens), seed=self.cfg.seed + seed_offset,
                 max_duration_s=self.cfg.stop.max_duration_s, first_id=self.next_id, closed=self.closed)
        self.next_id += load.requests
        return p.run()

    def warmup(self) -> None:
        if self.cfg.warmup_queries:
            self.run_pass(Load("single_stream", self.cfg.warmup_queries), seed_offset=1)

    def headline_load(self) -> Load:
        cfg, n = self.cfg, self.cfg.stop.min_queries
        mode = cfg.generate_mode
        if mode == "rate":
            return Load("rate", n, rate=cfg.rate)
        if mode == "concurrency":
            return Load("concurrency", n, concurrency=cfg.concurrency)
        return Load("single_stream", n, concurrency=1)

    def slo_search(self) -> dict[str, Any]:
        """The largest probed rate whose p99 TTFT and p99 TPOT both meet the SLO (MLPerf LLM Server):
        a throughput probe gives the top, a probe at 1/16 of it the bottom, then bisection on a
        log scale. Not met at the bottom is a result ("SLO not met at any rate"), not an error."""
        cfg, n = self.cfg, self.cfg.stop.min_queries
        a, b = float(cfg.ttft_slo_ms), float(cfg.tpot_slo_ms)
        top = achieved_rate(self._probe(Load("throughput", n), a, b))
        lo_rate = top * LOWEST_RATE_SHARE
        rec = {"ttft_ms": a, "tpot_ms": b, "throughput_rate": top, "probes": []}
        ok, _, _ = self._check(self._probe(Load("rate", n, rate=lo_rate), a, b), a, b)
        if not ok:
            return {**rec, "max_rate": None, "met": False, "probes": self.probes,
                    "reason": f"SLO not met at any rate (p99 TTFT <= {a:g} ms and p99 TPOT <= {b:g} ms failed "
                              f"even at {lo_rate:.3g} requests/s, 1/16 of the measured throughput)"}
        good, bad = lo_rate, top * 1.05
        ok_top, _, _ = self._check(self._probe(Load("rate", n, rate=bad), a, b), a, b)
        if ok_top:
            good = bad
        else:
            for _ in range(SEARCH_STEPS):
                mid = float(np.sqrt(good * bad))
                ok_mid, _, _ = self._check(self._probe(Load("rate", n, rate=mid), a, b), a, b)
                good, bad = (mid, bad) if ok_mid else (good, mid)
        return {**rec, "max_rate": good, "met": True, "reason": None, "probes": self.probes}

    def _probe(self, load: Load, a: float, b: float) -> dict[str, Any]:
        p = self.run_pass(load, seed_offset=len(self.probes) + 2)
        met, t99, p99_ = slo_check(p, a, b)
        self.probes.append({**load.record(), "met": met, "ttft_p99_ms": t99, "tpot_p99_ms": p99_,
                            "achieved_rate": achieved_rate(p)})
        return p

    @staticmethod
    def _check(p, a, b):
        return slo_check(p, a, b)

    def sweep(self, headline: dict[str, Any] | None) -> list[dict[str, Any]]:
        """guidellm's sweep: synchronous, throughput, then rates evenly spaced between their rates."""
        n = self.cfg.stop.min_queries
        sync = headline if headline is not None and headline["mode"] == "single_stream" \
            else self.run_pass(Load("single_stream", n, concurrency=1), seed_offset=100)
        thr = self.run_pass(Load("throughput", n), seed_offset=101)
        # guidellm spaces the rates between the synchronous and the throughput rate; a model whose
        # batching does not pay (throughput no faster than one at a time) still gets its points,
        # between the two rates in whichever order they came, or below the one rate if they tie.
        r0, r1 = sorted((achieved_rate(sync), achieved_rate(thr)))
        rates = np.linspace(r0, r1, DEFAULT_SWEEP_RATES + 2)[1:-1] if r1 > r0 * 1.001 else \
            r1 * np.arange(1, DEFAULT_SWEEP_RATES + 1) / (DEFAULT_SWEEP_RATES + 1)
        points = [sync, thr] + [self.run_pass(Load("rate", n, rate=float(r)), seed_offset=102 + i)
                                for i, r in enumerate(rates)]
        return [{**p, "point": i} for i, p in enumerate(points)]


# ---- the worker's entry ---------------------------------------------------------------------------
def make_backend(adapter, job, cfg: ScenarioConfig):
    kind = job.manifest.model.kind
    name = job.manifest.name
    if kind == "transformers":
        from heptathlon.runners.adapters.causal_lm import CausalLMEngine

        spec = job.manifest.model.text_spec
        engine = CausalLMEngine(adapter, max_new_tokens=int(cfg.max_new_tokens), ignore_eos=bool(cfg.ignore_eos),
                                max_batch=cfg.max_batch, truncation=spec.truncation, submission=name)
        return EngineBackend(engine)
    if kind == "command":
        return CommandStream(adapter, max_new_tokens=int(cfg.max_new_tokens), ignore_eos=bool(cfg.ignore_eos))
    raise SubmissionError(f"submission {name!r}: the generate scenario runs kind transformers (a causal LM "
                          f"folder) or kind command (the streaming stdio protocol), not kind {kind!r}")


def prompts_of(x: np.ndarray, submission: str) -> list[str]:
    a = np.asarray(x)
    if a.dtype.kind not in "US" or a.ndim != 1:
        raise SubmissionError(f"submission {submission!r}: the generate scenario needs a text task with one prompt "
                              f"column (input_type: text); this task's inputs are {a.dtype} of shape {a.shape}")
    return [str(p) for p in a]


def run_generate(adapter, job, cfg: ScenarioConfig, x: np.ndarray, meters_factory) -> dict[str, Any]:
    """Every pass of a generate run, and the meters' payload around the headline pass."""
    name = job.manifest.name
    prompts = prompts_of(x, name)
    backend = make_backend(adapter, job, cfg)
    backend.prepare(prompts)
    drv = Driver(backend, prompts, cfg, name)
    drv.warmup()
    slo = None
    load = drv.headline_load()
    if cfg.ttft_slo_ms is not None:
        slo = drv.slo_search()
        if slo["met"]:
            load = Load("rate", cfg.stop.min_queries, rate=slo["max_rate"])
        elif cfg.rate is None:
            load = Load("rate", cfg.stop.min_queries, rate=slo["throughput_rate"] * LOWEST_RATE_SHARE)
    meters = meters_factory()
    if meters:
        meters.start()
    headline = drv.run_pass(load)
    energy = meters.stop() if meters else None
    sweep = drv.sweep(headline) if cfg.sweep else None
    engine = getattr(backend, "engine", None)
    return {"backend": backend.name, "headline": headline, "slo": slo, "sweep": sweep, "energy": energy,
            "truncated_prompts": engine.truncated if engine is not None else 0,
            "cohorts": engine.cohorts[-64:] if engine is not None else None,
            "prompt_tokens_source": ("the model's tokenizer" if engine is not None else
                                     "the submission's 'prompt_tokens', else whitespace words")}
