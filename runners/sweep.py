"""The batch_sweep phase of a run, worker side (docs/framework-tax.md).

It runs after the timed latency pass and outside the meter window. For the submission as
submitted and, for torch kinds, each runtime derived from it:

1. an unprofiled sweep: latency at b = 1, 2, 4, ... up to the cap (``heptathlon.runners.profiling.batch_sweep``),
   ending at the first size that fails (a fixed-shape model, MemoryError, CUDA out-of-memory);
2. a separate profiled pass at each size the sweep reached (``heptathlon.runners.profiling.decompose_call``):
   torch.profiler for torch runtimes, ONNX Runtime's profiler for ONNX. It never runs inside the
   sweep, so profiling never inflates a reported latency.

Only raw samples leave the worker, as a JSON payload in result["sweep"];
``heptathlon.bench.sweep_stats`` computes every statistic in the parent. Nothing here raises into the
run: a conversion, runtime or profiler that fails is reported with its reason.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from heptathlon.bench.errors import one_line
from heptathlon.bench.scenarios import DEFAULT_SWEEP_REPEATS, ScenarioConfig, instance_order
from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.adapters.registry import RUNTIMES, runtime_class
from heptathlon.runners.profiling import batch_sweep, decompose_call, powers_of_two

# torch.compile's first compilation gets max(this, the scenario's max duration); past it the runtime
# is skipped with the reason. On this project's shared 2-core machines a 3-layer MLP compiles in
# 3-35 s depending on load; a model that takes minutes would hold up a demo run. --max-duration
# (or --full) raises the budget.
COMPILE_BUDGET_S = 30.0
PROFILE_WARMUP = 2
EXAMPLE_BATCH = 4  # derive_runtimes checks a converted model at this batch size and one more


def sweep_batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to ``max_batch``, and the cap itself where it is not a power of two."""
    sizes = powers_of_two(max_batch)
    return sizes + ([max_batch] if sizes[-1] != max_batch else [])


def _batch_maker(x: np.ndarray, seed: int) -> Callable[[int], np.ndarray]:
    """b instances from the task's inputs, in the scenarios' fixed seeded order (wrapping around)."""
    order = instance_order(seed, len(x))

    # Numeric features as float32; text (unicode) and token (int64) inputs keep their dtype.
    text_or_tokens = x.dtype.kind == "U" or (x.dtype == np.int64 and x.ndim == 3)
    dtype = None if text_or_tokens else np.float32

    def make(b: int) -> np.ndarray:
        return np.ascontiguousarray(x[np.resize(order, b)], dtype=dtype)

    return make


def derived_runtimes(adapter: ModelAdapter, profile, requested: tuple[str, ...] | None,
                     make_np: Callable[[int], np.ndarray], compile_budget_s: float = COMPILE_BUDGET_S,
                     ) -> tuple[dict[str, ModelAdapter], Callable[[int], Any] | None]:
    """Runtimes derived from a torch submission, and the batch builder their ``prepare`` takes.

    ``requested`` None means every runtime the kind's adapter can derive (``derivable``). A
    requested runtime that cannot be derived from this kind is returned unavailable with the reason.
    """
    kind = adapter.manifest.model.kind
    derivable = adapter.derivable
    wanted = [r for r in (requested or derivable) if r != adapter.name]
    out: dict[str, ModelAdapter] = {}
    for r in wanted:
        if r not in derivable:
            why = (f"kind {kind!r}: no other runtime is derived from this submission" if not derivable
                   else f"kind {kind!r}: {r} is not derived from a {kind} model (derived: {', '.join(derivable)})")
            out[r] = runtime_class(r).unavailable(why)
    include = [r for r in wanted if r in derivable]
    if not include:
        return out, None
    if hasattr(adapter, "derive_remote"):  # a model process: the runtimes are derived there, driven from here
        derived, adapter.remote_threads = adapter.derive_remote(include, make_np(EXAMPLE_BATCH), compile_budget_s)
        out.update(derived)
        return out, make_np
    import torch

    from heptathlon.runners.adapters.derive import derive_runtimes
    from heptathlon.runners.adapters.onnx import session_options_factory

    device, dtype = adapter.device, adapter.input_dtype
    module = adapter.module

    def make_tensor(b: int) -> Any:
        return torch.from_numpy(make_np(b)).to(device, dtype)

    if hasattr(adapter, "sweep_inputs"):  # transformers: token tensors, positionally, from the task's text
        module, make_tensor = adapter.sweep_inputs(make_np)

    # torch.compile last: a compile cut short by its budget must not disturb the other conversions.
    include.sort(key=lambda r: r == "torch.compile")
    try:
        from heptathlon.runners.controls import ort_session_options

        # The profile's providers (with their options), so a derived ORT session runs where the profile says.
        providers = ort_session_options(profile)[1] if "onnxruntime" in include else None
        derived = derive_runtimes(module, make_tensor(EXAMPLE_BATCH), device=device, include=include,
                                  make_session_options=session_options_factory(profile), providers=providers,
                                  compile_budget_s=compile_budget_s)
    except Exception as exc:  # noqa: BLE001 - derive_runtimes reports conversions; this is anything else
        derived = {r: runtime_class(r).unavailable(f"deriving runtimes failed ({one_line(exc)})") for r in include}
    out.update(derived)
    return out, make_tensor


def _sweep_one(rt: ModelAdapter, make_input: Callable[[int], Any], sizes: list[int], repeats: int,
               min_time_s: float, budget_s: float) -> dict[str, Any]:
    """Unprofiled sweep, then the profiled pass at every size it reached: raw samples only."""
    entry: dict[str, Any] = {"available": rt.available, "reason": rt.reason, "kind": rt.profiler, "device": rt.device,
                             "convert_s": rt.convert_s, "how": rt.details.get("how")}
    if not rt.available:
        return entry
    t0 = time.perf_counter()
    res = batch_sweep(rt.predict, lambda b: rt.prepare(make_input(b)), batch_sizes=sizes, repeats=repeats,
                      min_time_s=min_time_s, warmup=1, max_total_s=budget_s)
    entry.update(batch_sizes=list(res.batch_sizes), latencies_s=[list(x) for x in res.latencies_s],
                 stopped_at=res.stopped_at, stop_reason=res.stop_reason, sweep_s=time.perf_counter() - t0)
    if rt.profiler == "command":
        return entry  # no profiler sees inside a command: the parent estimates from the sweep
    decomps = []
    t1 = time.perf_counter()
    for b in res.batch_sizes:
        if time.perf_counter() - t1 > budget_s:
            decomps.append({"batch_size": b, "method": "unavailable", "wall_s": [], "compute_s": [],
                            "reason": f"profiled pass not run: its time budget of {budget_s:g} s was spent "
                                      "(give each runtime more with --max-duration SECONDS)",
                            "details": {}})
            continue
        if hasattr(rt, "decompose_remote"):  # profiled inside the model process; labelled measured_in there
            d = rt.decompose_remote(make_input(b), repeats=repeats, warmup=PROFILE_WARMUP)
        else:
            d = decompose_call(rt, make_input(b), repeats=repeats, warmup=PROFILE_WARMUP)
        decomps.append({"batch_size": b, "method": d.method, "wall_s": list(d.wall_s), "compute_s": list(d.compute_s),
                        "reason": d.reason, "details": d.details})
    entry.update(decompositions=decomps, profile_s=time.perf_counter() - t1)
    return entry


def _thread_record(profile, runtimes: dict[str, ModelAdapter]) -> dict[str, Any]:
    """Which thread settings the sweep ran under: the profile's, for derived runtimes too."""
    rec: dict[str, Any] = {"profile_threads": profile.cpu.threads}
    try:
        torch = sys.modules.get("torch")  # only where the adapter imported it
        if torch is not None:
            rec["torch_threads"] = torch.get_num_threads()
        ort_rt = next((r for r in runtimes.values() if r.profiler == "onnxruntime" and r.available), None)
        if ort_rt is not None:
            so = ort_rt.make_session_options()
            rec["ort_intra_op_num_threads"] = so.intra_op_num_threads
            rec["ort_inter_op_num_threads"] = so.inter_op_num_threads
    except Exception as exc:  # noqa: BLE001 - a record, never a failure
        rec["error"] = one_line(exc)
    return rec


def _sweep_runtimes(adapter, profile, cfg: ScenarioConfig, make_np, sizes: list[int], repeats: int,
                    min_time_s: float, budget_s: float) -> dict[str, Any]:
    """The primary runtime and the ones derived from it, each swept and decomposed (at the adapter's
    current sequence length, for text)."""
    # The loaded adapter is the primary runtime: the submission exactly as the timed pass ran it.
    runtimes: dict[str, ModelAdapter] = {adapter.name: adapter}
    inputs: dict[str, Callable[[int], Any]] = {adapter.name: make_np}
    t_derive = time.perf_counter()
    derived, make_tensor = derived_runtimes(adapter, profile, cfg.runtimes, make_np,
                                            compile_budget_s=max(COMPILE_BUDGET_S, budget_s))
    out: dict[str, Any] = {"derive_s": time.perf_counter() - t_derive}
    for name in sorted(derived, key=lambda r: RUNTIMES.index(r)):
        runtimes[name] = derived[name]
        inputs[name] = make_tensor
    out["runtimes"] = {name: {"primary": name == adapter.name,
                              **_sweep_one(rt, inputs[name], sizes, repeats, min_time_s, budget_s)}
                       for name, rt in runtimes.items()}
    out["_runtimes"] = runtimes
    return out


def run_sweep_phase(adapter, cfg: ScenarioConfig, x: np.ndarray, profile) -> dict[str, Any]:
    """Sweep and decompose every runtime of a loaded submission; a JSON-able payload of raw samples.

    Each size runs exactly ``repeats`` timed calls (and ``repeats`` profiled ones): a time minimum
    would give a 5 us model tens of thousands of samples per size, and the parent's stratified
    bootstrap of the knee over them would take longer than the run. Budgets: each runtime's
    sweep, and separately its profiled pass, stop starting new batch sizes once
    ``cfg.stop.max_duration_s`` is spent; torch.compile's first compilation gets
    ``max(COMPILE_BUDGET_S, cfg.stop.max_duration_s)``.
    """
    t0 = time.perf_counter()
    kind = adapter.manifest.model.kind
    sizes = sweep_batch_sizes(cfg.max_batch)
    repeats = cfg.repeats or DEFAULT_SWEEP_REPEATS["demo"]
    min_time_s = 0.0
    budget_s = cfg.stop.max_duration_s
    make_np = _batch_maker(x, cfg.seed)
    payload: dict[str, Any] = {"kind": kind, "primary_runtime": adapter.name, "batch_sizes_requested": sizes,
                               "max_batch": cfg.max_batch, "repeats": repeats,
                               "budget_s": budget_s, "runtimes_requested": list(cfg.runtimes or []) or None}
    lengths: list[int | None] = [None]
    if hasattr(adapter, "fix_sequence_length"):  # text: one sequence length for every runtime and batch size
        lengths = list(cfg.seq_lengths or [None])
    elif cfg.seq_lengths:
        payload["seq_lengths_unavailable"] = (f"kind {kind!r}: a sequence-length axis is swept for kind "
                                              "'transformers' only; this sweep ran at the inputs' own lengths")
    runtimes: dict[str, ModelAdapter] = {}
    for i, length in enumerate(lengths):
        if hasattr(adapter, "fix_sequence_length"):
            seq = adapter.fix_sequence_length(x, length)
        at = _sweep_runtimes(adapter, profile, cfg, make_np, sizes, repeats, min_time_s, budget_s)
        runtimes = at.pop("_runtimes")
        if i == 0:  # the first length is the run's own sweep (its headline values)
            payload.update(at)
            if hasattr(adapter, "fix_sequence_length"):
                payload["sequence_length"] = seq
        if len(lengths) > 1:
            payload.setdefault("by_sequence_length", {})[str(seq)] = at
    payload["threads"] = getattr(adapter, "remote_threads", None) or _thread_record(profile, runtimes)
    payload["phase_s"] = time.perf_counter() - t0
    return payload
