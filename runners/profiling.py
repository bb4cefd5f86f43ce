"""Framework-tax measurements: T_compute vs T_wall per call, and latency against batch size.

The decomposition runs in its own profiled pass, after and apart from the timed latency pass:
profilers add per-operator cost, and that must never inflate the reported latency. Within the
profiled pass, T_wall and T_compute of call i come from the same call, so FT = (T_wall -
T_compute) / T_wall is measured on consistent numbers. The profiler's own per-operator cost
lands in T_wall and partly in T_compute, so the profiled FT is biased upwards for models with
many tiny operators. Each decomposition therefore also times unprofiled calls and records the
profiler's inflation and a lower bound of the tax (see ``assemble_decomposition``);
docs/framework-tax.md quantifies both on this machine.

Sources of T_compute:
- torch on CPU: self CPU time of compute operators, from torch.profiler (``profiler:torch``);
- torch on CUDA: device time of kernels and memory operations, from torch.profiler via CUPTI
  (``profiler:torch-cuda``), cross-checked against CUDA events around the call;
- ONNX Runtime (CPU execution provider): per-node kernel time from its built-in profiler
  (``profiler:onnxruntime``).

A profiler that is missing or fails gives an unavailable result with the reason; nothing here
raises into the run.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from heptathlon.bench.errors import one_line
from heptathlon.bench.framework_tax import summarize_tax
from heptathlon.bench.metrics import MetricValue

CALL_MARK = "heptathlon::call"
UNRESOLVED_FACTOR = 2.0  # see assemble_decomposition
WARMUP_MARK = "heptathlon::warmup"

# --------------------------------------------------------------------------- result type


@dataclass(frozen=True)
class Decomposition:
    """Per-call wall and compute times (s) of one profiled pass, paired by index."""

    method: str
    wall_s: tuple[float, ...] = ()
    compute_s: tuple[float, ...] = ()
    reason: str | None = None  # set when the decomposition is unavailable
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.reason is None and len(self.wall_s) > 0

    @classmethod
    def unavailable(cls, method: str, reason: str, **details: Any) -> "Decomposition":
        return cls(method=method, reason=reason, details=details)

    def tax(self, *, n_resamples: int = 2000, seed: int = 0, **params: Any) -> MetricValue:
        """The ``framework_tax`` metric; unavailable (with the reason) when the profiler was."""
        if not self.available:
            return MetricValue.unavailable("framework_tax", self.reason or "no samples", tried=self.method, **params)
        try:
            return summarize_tax(self.wall_s, self.compute_s, self.method, n_resamples=n_resamples, seed=seed,
                                 **{**self.details, **params})
        except Exception as exc:  # noqa: BLE001 - a summary that cannot be formed is a result
            return MetricValue.unavailable("framework_tax", f"{type(exc).__name__}: {exc}", tried=self.method, **params)






def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _time_calls(call: Callable[[], Any], repeats: int) -> list[float]:
    """Unprofiled wall times (s) of ``repeats`` calls: the reference for the profiler's own cost."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


def assemble_decomposition(method: str, walls: Sequence[float], computes: Sequence[float], unprofiled: Sequence[float],
            **details: Any) -> Decomposition:
    """Pair, check and annotate one profiled pass.

    - Compute is clamped to wall: the two come from different clocks (the profiler's, at 1 us
      resolution for ONNX Runtime, and perf_counter), so a call with next to no overhead can
      read compute > wall by a rounding step. The count is recorded.
    - The profiler costs time per operator. Its cost always lands in T_wall and partly in
      T_compute. Comparing with unprofiled calls bounds the effect: if all of it lies outside
      the operators, the true tax is 1 - T_compute / T_wall(unprofiled), recorded as
      ``tax_lower_bound``; ``profiler_inflation`` is T_wall(profiled) / T_wall(unprofiled).
      Where the unprofiled calls ran slower (inflation < 1: noise between the passes exceeds the
      profiler's cost) the bound is the profiled FT, and ``noise_exceeds_profiler_cost`` says so.
    - A profile whose median compute exceeds UNRESOLVED_FACTOR times the median unprofiled
      call is not resolving the kernels (ONNX Runtime times each node at 1 us resolution, with
      its bookkeeping inside the node's time: 6-7x the whole call for width-8 nodes here); it
      is unavailable rather than a wrong number. The bound is loose on purpose: the passes run
      at different moments, and on a compute-bound model compute ~ wall, so scheduling noise
      between passes (tens of percent on a shared machine) must not trip it. Medians, because
      one descheduled call must not move it either; ``unprofiled`` holds calls timed both
      before and after the profiled pass, for the same reason.
    """
    wall = tuple(walls)
    comp = tuple(min(c, w) for w, c in zip(walls, computes))
    clamped = sum(1 for w, c in zip(walls, computes) if c > w)
    wall_u, comp_med, wall_med = _median(unprofiled), _median(comp), _median(wall)
    if comp_med > UNRESOLVED_FACTOR * wall_u:
        return Decomposition.unavailable(
            method, f"the profiler cannot resolve this model's kernels: profiled compute {comp_med * 1e3:.3f} ms "
            f"exceeds {UNRESOLVED_FACTOR:g}x the whole unprofiled call ({wall_u * 1e3:.3f} ms; medians)",
            profiler_inflation=wall_med / wall_u)
    # An unprofiled pass slower than the profiled one (inflation < 1) is pass-to-pass noise larger
    # than the profiler's cost: there is then no cost to take out, and the bound is the profiled
    # FT itself, never above it.
    lower = max(0.0, min(1.0 - comp_med / wall_u, 1.0 - comp_med / wall_med))
    extra = {"noise_exceeds_profiler_cost": True} if wall_u > wall_med else {}
    return Decomposition(method, wall, comp, details={
        "clamped": clamped, "unprofiled_wall_median_ms": wall_u * 1e3, "profiler_inflation": wall_med / wall_u,
        "tax_lower_bound": lower, **extra, **details})


def union_seconds(intervals_us: Iterable[tuple[float, float]]) -> float:
    """Length (s) of the union of [start, end] intervals in microseconds.

    A sum would count work on concurrent streams or threads twice; the union is the time during
    which any compute ran.
    """
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals_us):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total * 1e-6


# --------------------------------------------------------------------------- torch, CPU

# Operators whose self time is framework work, not computation on tensor data:
# - allocation and metadata: they create or describe storage but touch no elements;
# - views: they return a new TensorImpl over the same storage;
# - composites that only dispatch: their work runs in a child operator (linear -> addmm,
#   matmul -> mm/bmm, conv2d -> ... -> mkldnn_convolution, softmax -> _softmax, to -> copy_),
#   so their self time is dispatch and argument handling.
# Everything else with a namespace (aten::, mkldnn::, quantized::, custom ops) counts as compute.
# This is the inverse of a list of compute ops on purpose: an operator nobody listed (a new
# kernel, a custom op) then counts as compute, so an unknown op can only make the reported tax
# smaller, never invent overhead. Self time of a compute op still includes its own dispatch and
# output allocation, which torch.profiler cannot separate: on CPU the measured FT is therefore a
# lower bound of the overhead.
NON_COMPUTE_OPS = frozenset(f"aten::{op}" for op in (
    # allocation and metadata
    "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "resize_", "set_",
    "lift_fresh", "lift_fresh_copy", "size", "stride", "numel", "dim", "is_nonzero", "item", "_local_scalar_dense",
    "result_type", "_has_compatible_shallow_copy_type", "requires_grad_", "retain_grad",
    # views
    "view", "_unsafe_view", "view_as", "reshape", "_reshape_alias", "as_strided", "t", "numpy_T", "transpose",
    "permute", "expand", "expand_as", "squeeze", "unsqueeze", "flatten", "unflatten", "select", "slice",
    "narrow", "split", "split_with_sizes", "chunk", "unbind", "alias", "detach", "detach_", "resolve_conj",
    "resolve_neg", "_conj", "conj", "movedim", "swapaxes", "unfold", "diagonal", "real", "imag",
    "_unsafe_split", "_unsafe_split_with_sizes", "contiguous",
    # composites that only dispatch to a child operator
    "linear", "matmul", "einsum", "conv1d", "conv2d", "conv3d", "convolution", "_convolution",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "dropout", "feature_dropout", "alpha_dropout",
    "to", "_to_copy", "type_as", "clone", "layer_norm", "group_norm", "batch_norm", "_batch_norm_impl_index",
    "instance_norm", "softmax", "log_softmax", "cross_entropy_loss", "scaled_dot_product_attention",
    "_scaled_dot_product_attention", "embedding",
))

# Namespaces of records that are not operators doing math: TorchScript interpreter bookkeeping,
# profiler records, autograd engine records and our own call marks.
_NON_COMPUTE_NAMESPACES = frozenset({"prim", "profiler", "autograd", "heptathlon"})


def is_compute_event(name: str, is_user_annotation: bool = False) -> bool:
    """Whether a torch.profiler CPU record's self time counts as compute.

    Counts operators outside NON_COMPUTE_OPS, plus torch.compile's fused C++ kernels
    (``graph_N_cpp_fused_...``, recorded when Inductor's ``cpp.enable_kernel_profile`` is on,
    as heptathlon.runners.adapters.torch_compile sets it). Python-level records ("forward", "Torch-Compiled Region",
    user record_function ranges) are overhead.
    """
    if is_user_annotation:
        return False
    if "cpp_fused" in name:
        return True
    if "::" not in name or " " in name:
        return False
    namespace = name.split("::", 1)[0]
    return namespace not in _NON_COMPUTE_NAMESPACES and name not in NON_COMPUTE_OPS


class _Interval(Protocol):
    start: float
    end: float


class TorchEvent(Protocol):
    """The fields of torch.autograd.profiler_util.FunctionEvent this module reads."""

    name: str
    is_user_annotation: bool
    time_range: _Interval
    self_cpu_time_total: float


def compute_time_per_call(events: Iterable[TorchEvent], call_mark: str = CALL_MARK) -> list[float]:
    """Seconds of compute-operator self time inside each ``call_mark`` range, in call order.

    Self times are exclusive of children, so summing them over a call counts each microsecond
    once on the calling thread.
    """
    events = list(events)
    windows = sorted((e.time_range.start, e.time_range.end) for e in events if e.name == call_mark)
    starts = [w[0] for w in windows]
    totals = [0.0] * len(windows)
    for e in events:
        if e.name == call_mark or not is_compute_event(e.name, bool(getattr(e, "is_user_annotation", False))):
            continue
        i = bisect.bisect_right(starts, e.time_range.start) - 1
        if i >= 0 and e.time_range.end <= windows[i][1]:
            totals[i] += e.self_cpu_time_total
    return [t * 1e-6 for t in totals]


def profile_torch_cpu(fn: Callable[[Any], Any], inputs: Any, *, repeats: int = 20, warmup: int = 3) -> Decomposition:
    """Decompose ``fn(inputs)`` on CPU with torch.profiler; ``repeats`` profiled calls.

    T_wall: perf_counter around each call; T_compute: compute-operator self time inside the
    call's record_function range. The warm-up calls also run under the profiler (marked
    apart and dropped) so profiler start-up cost is not in the first measured call.
    """
    method = "profiler:torch"
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function
    except Exception as exc:  # noqa: BLE001
        return Decomposition.unavailable(method, f"torch.profiler cannot be imported ({one_line(exc)})")
    walls: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn(inputs)
        unprofiled = _time_calls(lambda: fn(inputs), repeats)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False, with_stack=False) as prof:
            for _ in range(max(1, warmup)):
                with record_function(WARMUP_MARK):
                    fn(inputs)
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                with record_function(CALL_MARK):
                    fn(inputs)
                walls.append((time.perf_counter_ns() - t0) * 1e-9)
        unprofiled += _time_calls(lambda: fn(inputs), repeats)
        compute = compute_time_per_call(prof.events())
    except Exception as exc:  # noqa: BLE001 - the profiled pass must never fail the run
        return Decomposition.unavailable(method, f"profiled pass failed ({one_line(exc)})")
    if len(compute) != len(walls):
        return Decomposition.unavailable(method, f"profiler recorded {len(compute)} of {len(walls)} calls")
    if not any(c > 0 for c in compute):
        return Decomposition.unavailable(method, "profiler recorded no compute operators inside the call")
    return assemble_decomposition(method, walls, compute, unprofiled, torch=torch.__version__)


# --------------------------------------------------------------------------- torch, CUDA (unverified here)


def device_busy_s(events: Iterable[Any]) -> tuple[float, float, int]:
    """(union s, sum s, count) of device-side records (kernels, memcpy, memset) of one call.

    Reads FunctionEvent.device_type == CUDA records; their time_range is on the host timeline
    after Kineto's clock alignment, and self_device_time_total is each record's duration.
    record_function ranges are mirrored onto the GPU timeline as user annotations spanning
    the call's kernels; they are skipped, or the union would be the whole span.
    """
    from torch.autograd import DeviceType

    intervals, total, count = [], 0.0, 0
    for e in events:
        if getattr(e, "device_type", None) != DeviceType.CUDA:
            continue
        if getattr(e, "is_user_annotation", False) or e.name.startswith("heptathlon::"):
            continue
        intervals.append((e.time_range.start, e.time_range.end))
        total += e.self_device_time_total
        count += 1
    return union_seconds(intervals), total * 1e-6, count


def profile_torch_cuda(fn: Callable[[Any], Any], inputs: Any, *, repeats: int = 20, warmup: int = 3,
                       device: str = "cuda") -> Decomposition:
    """Decompose ``fn(inputs)`` on a CUDA device. NOT verified on a GPU in this repository yet.

    One profiler session per call, so every device record belongs to that call without relying
    on cross-clock attribution. T_wall: perf_counter from call start until the device is idle
    again (torch.cuda.synchronize), i.e. until results are ready; T_compute: the union of
    device activity (kernels and memory operations) recorded by CUPTI. Cross-check: CUDA events
    recorded around the call measure the device-side span, which must lie between T_compute
    and T_wall; the medians are stored in details.
    """
    method = "profiler:torch-cuda"
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function
    except Exception as exc:  # noqa: BLE001
        return Decomposition.unavailable(method, f"torch.profiler cannot be imported ({one_line(exc)})")
    if not torch.cuda.is_available():
        return Decomposition.unavailable(method, "CUDA is not available in this process")
    walls, computes, spans, sums, counts = [], [], [], [], []
    try:
        dev = torch.device(device)
        with torch.inference_mode():
            for _ in range(warmup):
                fn(inputs)
            torch.cuda.synchronize(dev)
        def synced_call() -> None:
            fn(inputs)
            torch.cuda.synchronize(dev)

        unprofiled = _time_calls(synced_call, repeats)
        # The first session initialises CUPTI, which is slow; keep it out of the measured calls.
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
            fn(inputs)
            torch.cuda.synchronize(dev)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                torch.cuda.synchronize(dev)
                t0 = time.perf_counter_ns()
                start.record()
                with record_function(CALL_MARK):
                    fn(inputs)
                end.record()
                torch.cuda.synchronize(dev)
                walls.append((time.perf_counter_ns() - t0) * 1e-9)
            spans.append(start.elapsed_time(end) * 1e-3)
            union_s, sum_s, count = device_busy_s(prof.events())
            computes.append(union_s)
            sums.append(sum_s)
            counts.append(count)
        unprofiled += _time_calls(synced_call, repeats)
    except Exception as exc:  # noqa: BLE001
        return Decomposition.unavailable(method, f"profiled pass failed ({one_line(exc)})")
    if not any(counts):
        return Decomposition.unavailable(method, "the profiler recorded no CUDA kernels (is CUPTI available?)")
    return assemble_decomposition(method, walls, computes, unprofiled, cuda_event_span_median_ms=_median(spans) * 1e3,
                   kernel_sum_median_ms=_median(sums) * 1e3, device_records_per_call=_median(counts),
                   torch=torch.__version__)


# --------------------------------------------------------------------------- ONNX Runtime


@dataclass(frozen=True)
class OrtRunProfile:
    """One model_run of an ONNX Runtime profile: its duration and the union of its node kernel times."""

    model_run_s: float
    kernel_s: float
    n_nodes: int
    providers: tuple[str, ...]


def parse_ort_profile(events: Sequence[dict[str, Any]]) -> list[OrtRunProfile]:
    """Runs of an ONNX Runtime profile (the JSON list end_profiling writes), in run order.

    Nodes are ``"cat": "Node"`` records named ``<node>_kernel_time``; each is attributed to the
    ``model_run`` session record whose [ts, ts + dur] contains its start.
    """
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    starts = [r["ts"] for r in runs]
    nodes: list[list[tuple[float, float]]] = [[] for _ in runs]
    providers: list[set[str]] = [set() for _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= runs[i]["ts"] + runs[i]["dur"]:
            nodes[i].append((float(e["ts"]), float(e["ts"] + e["dur"])))
            providers[i].add(str(e.get("args", {}).get("provider", "unknown")))
    return [OrtRunProfile(model_run_s=r["dur"] * 1e-6, kernel_s=union_seconds(n), n_nodes=len(n),
                          providers=tuple(sorted(p))) for r, n, p in zip(runs, nodes, providers)]


def profile_onnxruntime(model: bytes | str | os.PathLike, feeds: dict[str, Any], *, repeats: int = 20, warmup: int = 3,
                        providers: Sequence[str] = ("CPUExecutionProvider",),
                        make_session_options: Callable[[], Any] | None = None) -> Decomposition:
    """Decompose ``session.run(None, feeds)`` with ONNX Runtime's built-in profiler.

    Profiling is a session option, so this opens its own session (from the same bytes or file,
    with the same options) and never touches the session that the latency pass timed.
    T_wall: perf_counter around session.run, i.e. the call as the harness sees it, including
    the Python binding and input/output conversion; T_compute: the union of node kernel times.
    The model_run duration (the part inside ONNX Runtime) is kept in details, so the overhead
    splits into binding (wall - model_run) and executor (model_run - kernels).
    Only the CPU execution provider is supported: on GPU providers, node times measure host-side
    launches, not kernel execution.
    """
    method = "profiler:onnxruntime"
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001
        return Decomposition.unavailable(method, f"onnxruntime cannot be imported ({one_line(exc)})")
    if list(providers) != ["CPUExecutionProvider"]:
        return Decomposition.unavailable(
            method, f"providers {list(providers)}: ONNX Runtime's node profile times host-side launches on GPU "
            "providers, not kernel execution; only CPUExecutionProvider is decomposed")
    walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="heptathlon-ort-") as tmp:
        try:
            opts = make_session_options() if make_session_options else ort.SessionOptions()
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(tmp, "ort")
            model_arg = model if isinstance(model, bytes) else os.fspath(model)
            plain = ort.InferenceSession(model_arg, sess_options=make_session_options() if make_session_options
                                         else ort.SessionOptions(), providers=list(providers))
            for _ in range(warmup):
                plain.run(None, feeds)
            unprofiled = _time_calls(lambda: plain.run(None, feeds), repeats)
            session = ort.InferenceSession(model_arg, sess_options=opts, providers=list(providers))
            for _ in range(warmup):
                session.run(None, feeds)
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                session.run(None, feeds)
                walls.append((time.perf_counter_ns() - t0) * 1e-9)
            path = session.end_profiling()
            with open(path) as f:
                events = json.load(f)
            del session
            unprofiled += _time_calls(lambda: plain.run(None, feeds), repeats)
        except Exception as exc:  # noqa: BLE001
            return Decomposition.unavailable(method, f"profiled pass failed ({one_line(exc)})")
    runs = parse_ort_profile(events)
    if len(runs) != warmup + repeats:
        return Decomposition.unavailable(method, f"profile holds {len(runs)} model_run records, expected {warmup + repeats}")
    runs = runs[warmup:]
    foreign = sorted({p for r in runs for p in r.providers} - {"CPUExecutionProvider"})
    if foreign:
        return Decomposition.unavailable(method, f"nodes ran on {foreign}; their profile times are not kernel execution")
    if not any(r.n_nodes for r in runs):
        return Decomposition.unavailable(method, "profile holds no node kernel times")
    return assemble_decomposition(method, walls, [r.kernel_s for r in runs], unprofiled,
                   model_run_median_ms=_median([r.model_run_s for r in runs]) * 1e3,
                   nodes_per_run=runs[0].n_nodes, onnxruntime=ort.__version__)


# --------------------------------------------------------------------------- dispatch


def decompose_call(runtime: Any, batch: Any, *, repeats: int = 20, warmup: int = 3) -> Decomposition:
    """Decompose one call of a runtime (a heptathlon.runners.adapters ModelAdapter) on ``batch``, as for prepare.

    The adapter's ``profiler`` picks the profiler: "onnxruntime" opens its own session over
    ``onnx_model``; "torch" wraps ``predict`` in torch.profiler (CUPTI on a CUDA device).
    """
    if not getattr(runtime, "available", False):
        return Decomposition.unavailable("unavailable", f"runtime {runtime.name!r} is not available: {runtime.reason}")
    try:
        inputs = runtime.prepare(batch)
    except Exception as exc:  # noqa: BLE001
        return Decomposition.unavailable("unavailable", f"preparing the batch failed ({one_line(exc)})")
    if runtime.profiler == "onnxruntime":
        return profile_onnxruntime(runtime.onnx_model, inputs, repeats=repeats, warmup=warmup,
                                   providers=runtime.providers, make_session_options=runtime.make_session_options)
    if runtime.profiler == "torch" and runtime.device.startswith("cuda"):
        return profile_torch_cuda(runtime.predict, inputs, repeats=repeats, warmup=warmup, device=runtime.device)
    if runtime.profiler == "torch":
        return profile_torch_cpu(runtime.predict, inputs, repeats=repeats, warmup=warmup)
    return Decomposition.unavailable("unavailable", f"no profiler for runtime kind {runtime.profiler!r}")


# --------------------------------------------------------------------------- batch sweep


@dataclass(frozen=True)
class SweepResult:
    """Latency (s) per batch size, for every size that worked, and why the sweep stopped early."""

    batch_sizes: tuple[int, ...]
    latencies_s: tuple[tuple[float, ...], ...]
    stopped_at: int | None = None  # the batch size that failed or was not started
    stop_reason: str | None = None

    def median_latency_s(self) -> dict[int, float]:
        return {b: statistics.median(x) for b, x in zip(self.batch_sizes, self.latencies_s)}


def powers_of_two(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to and including max_batch where it is a power of two."""
    out, b = [], 1
    while b <= max_batch:
        out.append(b)
        b *= 2
    return out


def _release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")  # only where the worker already imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def batch_sweep(predict_fn: Callable[[Any], Any], make_batch: Callable[[int], Any], *,
                batch_sizes: Sequence[int] | None = None, max_batch: int = 256, repeats: int = 10,
                min_time_s: float = 0.0, warmup: int = 1, max_total_s: float | None = None) -> SweepResult:
    """Latency of ``predict_fn(make_batch(b))`` for b = 1, 2, 4, ... up to ``max_batch``.

    At each size: ``warmup`` untimed calls (this is where torch.compile recompiles for a new
    shape), then timed calls until both ``repeats`` calls and ``min_time_s`` are done. The batch
    is built outside the timed region. The sweep stops at the first size that fails - a
    fixed-shape model rejecting it, MemoryError, CUDA out-of-memory - and keeps every size
    before it; it also stops before starting a size once ``max_total_s`` is spent. Nothing raises.
    """
    sizes = list(batch_sizes) if batch_sizes is not None else powers_of_two(max_batch)
    done_sizes: list[int] = []
    done_lat: list[tuple[float, ...]] = []
    t_start = time.perf_counter()
    for b in sizes:
        if max_total_s is not None and time.perf_counter() - t_start > max_total_s:
            return SweepResult(tuple(done_sizes), tuple(done_lat), b,
                               f"time budget of {max_total_s:g} s spent before batch size {b} "
                               "(give each runtime more with --max-duration SECONDS)")
        lat: list[float] = []
        batch = None  # the previous size's batch is released before the next one is built
        try:
            batch = make_batch(b)
            for _ in range(warmup):
                predict_fn(batch)
            t_size = time.perf_counter_ns()
            while len(lat) < repeats or (time.perf_counter_ns() - t_size) * 1e-9 < min_time_s:
                t0 = time.perf_counter_ns()
                predict_fn(batch)
                lat.append((time.perf_counter_ns() - t0) * 1e-9)
        except Exception as exc:  # noqa: BLE001 - MemoryError, OOM and shape rejections all end the sweep
            batch = None  # drop the batch that failed (e.g. out of memory) before releasing memory
            _release_memory()
            return SweepResult(tuple(done_sizes), tuple(done_lat), b, f"batch size {b}: {one_line(exc)}")
        done_sizes.append(b)
        done_lat.append(tuple(lat))
    return SweepResult(tuple(done_sizes), tuple(done_lat))
