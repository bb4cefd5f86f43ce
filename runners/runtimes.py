"""Derive runnable runtimes from one torch module: eager, TorchScript, torch.compile, ONNX Runtime.

The framework-tax event compares runtimes on the same model (Fernandez et al. 2023, sec. 5).
Each runtime is a ``RuntimeCandidate``: ``prepare`` turns a batch of tensors into the runtime's
input outside the timed region, ``predict`` is the timed call. A conversion that fails, or whose
outputs disagree with eager, is a candidate with ``available=False`` and the reason, never an
exception: one runtime failing must not fail the run.

A batch is a tensor or a tuple of tensors with the batch on dim 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ModelError, UnknownRuntimeError, one_line

RUNTIMES = ("eager", "torchscript", "torch.compile", "onnxruntime")


@dataclass(frozen=True)
class RuntimeCandidate:
    """One way of running a model. ``kind`` picks the profiler: "torch" or "onnxruntime"."""

    name: str
    kind: str
    available: bool
    reason: str | None = None
    predict: Callable[[Any], Any] | None = None
    prepare: Callable[[Any], Any] | None = None
    device: str = "cpu"
    onnx_model: bytes | None = None  # the exported model, so the profiler can open its own session
    providers: tuple[str, ...] = ()
    make_session_options: Callable[[], Any] | None = None  # the profile's ORT options, reused by the profiler
    convert_s: float | None = None  # conversion/compile time; not part of any latency
    details: dict[str, Any] | None = None

    @classmethod
    def unavailable(cls, name: str, kind: str, reason: str, device: str = "cpu") -> "RuntimeCandidate":
        return cls(name=name, kind=kind, available=False, reason=reason, device=device)






def _as_tuple(batch: Any) -> tuple:
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def _to_numpy_tree(out: Any) -> list:
    import numpy as np
    import torch

    if isinstance(out, torch.Tensor):
        return [out.detach().cpu().numpy()]
    if isinstance(out, np.ndarray):
        return [out]
    if isinstance(out, dict):
        return [a for k in sorted(out) for a in _to_numpy_tree(out[k])]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _to_numpy_tree(o)]
    return [np.asarray(out)]


def _outputs_mismatch(reference: Any, candidate: Any, rtol: float, atol: float) -> str | None:
    """None when the outputs agree, else a one-line description of the difference."""
    import numpy as np

    ref, got = _to_numpy_tree(reference), _to_numpy_tree(candidate)
    if len(ref) != len(got):
        return f"returns {len(got)} outputs, eager returns {len(ref)}"
    for i, (r, g) in enumerate(zip(ref, got)):
        if r.shape != g.shape:
            return f"output {i} has shape {g.shape}, eager has {r.shape}"
        if not np.allclose(r.astype(float), g.astype(float), rtol=rtol, atol=atol):
            return f"output {i} differs from eager by up to {float(np.max(np.abs(r.astype(float) - g.astype(float)))):.3g}"
    return None


def _move(batch: tuple, device: str) -> tuple:
    return tuple(t.to(device) for t in batch)


def _double_batch_if_one(batch: tuple) -> tuple:
    """torch.export specialises a dimension of size 1 to a constant, so export with batch >= 2."""
    import torch

    if batch and batch[0].shape[0] == 1:
        return tuple(torch.cat([t, t], dim=0) for t in batch)
    return batch


def torch_runtime(name: str, module: Any, *, device: str = "cpu", convert_s: float | None = None,
                  details: dict[str, Any] | None = None) -> RuntimeCandidate:
    """Wrap a callable torch module (eager, scripted, compiled or torch.jit.load-ed) as a runtime.

    The timed call runs under ``torch.inference_mode()``: entering it is part of what a serving
    framework pays per call, so it stays inside the timed region.
    """
    import torch

    def prepare(batch: Any) -> tuple:
        return _move(_as_tuple(batch), device)

    def predict(inputs: tuple) -> Any:
        with torch.inference_mode():
            return module(*inputs)

    return RuntimeCandidate(name=name, kind="torch", available=True, predict=predict, prepare=prepare,
                            device=device, convert_s=convert_s, details=details or {})


def onnxruntime_runtime(model: bytes | str | Path, *, name: str = "onnxruntime", device: str = "cpu",
                        providers: Sequence[str] | None = None,
                        make_session_options: Callable[[], Any] | None = None,
                        convert_s: float | None = None) -> RuntimeCandidate:
    """An ONNX Runtime session over an exported model (bytes) or an .onnx file.

    Inputs map positionally onto the session's inputs and are converted to contiguous numpy
    arrays in ``prepare``, outside the timed call. ``make_session_options`` builds the
    profile's SessionOptions (threads, graph optimisation); the profiler reuses it for its own
    session so both passes run the same configuration.
    """
    try:
        import numpy as np
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return RuntimeCandidate.unavailable(name, "onnxruntime", f"onnxruntime cannot be imported ({one_line(exc)})", device)
    model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
    if providers is None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    # A provider is a name or (name, options), as controls.ort_session_options gives them.
    missing = [p for p in providers if (p[0] if isinstance(p, (tuple, list)) else p) not in ort.get_available_providers()]
    if missing:
        return RuntimeCandidate.unavailable(
            name, "onnxruntime", f"execution providers {missing} are not in this onnxruntime build "
            f"(available: {ort.get_available_providers()})", device)
    try:
        opts = make_session_options() if make_session_options else ort.SessionOptions()
        session = ort.InferenceSession(model_bytes, sess_options=opts, providers=list(providers))
    except Exception as exc:  # noqa: BLE001
        return RuntimeCandidate.unavailable(name, "onnxruntime", f"session creation failed ({one_line(exc)})", device)
    input_names = [i.name for i in session.get_inputs()]

    def prepare(batch: Any) -> dict:
        arrays = _as_tuple(batch)
        if len(arrays) != len(input_names):
            raise ModelError(f"model takes {len(input_names)} inputs {input_names}, batch has {len(arrays)}")
        out = {}
        for n, a in zip(input_names, arrays):
            if hasattr(a, "detach"):
                a = a.detach().cpu().numpy()
            out[n] = np.ascontiguousarray(a)
        return out

    def predict(feeds: dict) -> Any:
        return session.run(None, feeds)

    return RuntimeCandidate(name=name, kind="onnxruntime", available=True, predict=predict, prepare=prepare,
                            device=device, onnx_model=model_bytes, providers=tuple(session.get_providers()),
                            make_session_options=make_session_options,
                            convert_s=convert_s, details={"inputs": input_names})


def export_onnx(module: Any, example: tuple, *, dynamic_batch: bool = True) -> tuple[bytes, str]:
    """Export to ONNX bytes; returns (model bytes, exporter used).

    torch 2.13's default is the torch.export-based exporter (``dynamo=True``, needs onnxscript).
    Where it fails (graph breaks, data-dependent control flow) the legacy TorchScript-based
    exporter is tried; both errors are reported if neither works.
    """
    import io

    import torch

    if dynamic_batch:
        example = _double_batch_if_one(example)
    names = [f"input_{i}" for i in range(len(example))]
    errors = []
    try:
        kwargs: dict[str, Any] = {}
        if dynamic_batch:
            kwargs["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} for _ in example)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, dynamo=True, input_names=names, verbose=False, **kwargs)
        return program.model_proto.SerializeToString(), "torch.onnx.export(dynamo=True)"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"dynamo exporter: {one_line(exc, 200)}")  # both reasons must fit in one
    try:
        buf = io.BytesIO()
        dyn = {n: {0: "batch"} for n in names} if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buf, dynamo=False, input_names=names, dynamic_axes=dyn)
        return buf.getvalue(), "torch.onnx.export(dynamo=False)"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"legacy exporter: {one_line(exc, 200)}")
    raise RuntimeError("; ".join(errors))


class CompileBudgetExceeded(BaseException):
    """Raised inside a torch.compile that ran past its budget.

    A BaseException, so that the compiler's own ``except Exception`` handlers (which may fall
    back to eager silently) let it through.
    """


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block with CompileBudgetExceeded after ``seconds`` (SIGALRM; main thread only).

    Compilation runs in this thread and cannot be cancelled from another; a signal handler is
    the one way to stop it. Elsewhere (a non-main thread, no SIGALRM) the block runs unbounded.
    """
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise CompileBudgetExceeded(f"compilation exceeded its budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _compile(module: Any, example: tuple, device: str, budget_s: float | None) -> RuntimeCandidate:
    """torch.compile, bounded by ``budget_s``: a compile that does not finish in time is unavailable."""
    import torch

    # Import the compiler before the clock starts: an import cut short by the signal would leave
    # half-initialised modules behind for the rest of the process.
    import torch._dynamo  # noqa: F401
    import torch._inductor.compile_fx  # noqa: F401

    t0 = time.perf_counter()
    try:
        with _time_limit(budget_s):
            # Inductor's fused C++ kernels are not aten ops; enable_kernel_profile wraps each in a
            # profiler record so heptathlon.runners.profiling can count it as compute. Compilation is lazy, so
            # the first call here is where it fails (e.g. no C compiler) or succeeds.
            compiled = torch.compile(module, options={"cpp.enable_kernel_profile": True})
            cand = torch_runtime("torch.compile", compiled, device=device, details={"how": "torch.compile(inductor)"})
            cand.predict(example)
    except CompileBudgetExceeded as exc:
        with contextlib.suppress(Exception):
            torch._dynamo.reset()  # drop whatever the interrupted compile left in dynamo's caches
        return RuntimeCandidate.unavailable("torch.compile", "torch", f"skipped: {exc}", device)
    elapsed = time.perf_counter() - t0
    if budget_s and elapsed > budget_s:  # the signal landed where it was swallowed: the budget still holds
        return RuntimeCandidate.unavailable("torch.compile", "torch", f"skipped: compilation took {elapsed:.1f} s, "
                                            f"over its budget of {budget_s:g} s", device)
    return replace(cand, convert_s=elapsed)


def _convert(name: str, module: Any, example: tuple, device: str, make_session_options, providers,
             compile_budget_s: float | None = None) -> RuntimeCandidate:
    import torch

    t0 = time.perf_counter()
    if name == "eager":
        return torch_runtime("eager", module, device=device, convert_s=0.0)
    if name == "torchscript":
        # trace, not script: trace handles any module whose control flow does not depend on
        # data, script rejects much ordinary Python. freeze folds weights into constants, as a
        # TorchScript deployment would. TorchScript is deprecated in torch 2.x; its warnings are
        # silenced here and the runtime is still measured while torch ships it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.inference_mode(False), torch.no_grad():
                scripted = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
        return torch_runtime("torchscript", scripted, device=device, convert_s=time.perf_counter() - t0,
                             details={"how": "torch.jit.trace + torch.jit.freeze"})
    if name == "torch.compile":
        return _compile(module, example, device, compile_budget_s)
    if name == "onnxruntime":
        model_bytes, how = export_onnx(module, example)  # the graph is device-agnostic; providers pick the device
        cand = onnxruntime_runtime(model_bytes, device=device, providers=providers,
                                   make_session_options=make_session_options, convert_s=time.perf_counter() - t0)
        return replace(cand, details={**(cand.details or {}), "how": how}) if cand.available else cand
    raise UnknownRuntimeError(f"unknown runtime {name!r}; --runtimes takes some of: {', '.join(RUNTIMES)}")


def derive_runtimes(module: Any, example_input: Any, *, device: str = "cpu", include: Sequence[str] = RUNTIMES,
                    make_session_options: Callable[[], Any] | None = None,
                    providers: Sequence[str] | None = None, check_outputs: bool = True,
                    rtol: float = 1e-3, atol: float = 1e-4,
                    compile_budget_s: float | None = None) -> dict[str, RuntimeCandidate]:
    """Every runtime in ``include`` for one eval-mode module, keyed by name, in ``include`` order.

    Each converted runtime runs ``example_input`` and a batch one row larger; where its outputs
    differ from eager's beyond (rtol, atol) it is unavailable, since comparing the speed of a
    wrong model means nothing. The second batch size catches conversions that froze the batch
    dimension (a trace that baked in a shape, an export without a dynamic axis), which a batch
    sweep needs. ``compile_budget_s`` bounds torch.compile's first compilation (unbounded when
    None); a compile past it is unavailable ("skipped: ..."). Never raises for a failed conversion.
    """
    import torch

    unknown = [n for n in include if n not in RUNTIMES]
    if unknown:
        raise UnknownRuntimeError(f"unknown runtimes {unknown}; --runtimes takes some of: {', '.join(RUNTIMES)}")
    module = module.eval().to(device)
    example = _move(_as_tuple(example_input), device)
    kind = {"onnxruntime": "onnxruntime"}
    other = tuple(torch.cat([t, t[:1]], dim=0) for t in example)  # batch + 1
    try:
        with torch.inference_mode():
            references = [(example, module(*example)), (other, module(*other))]
    except Exception as exc:  # noqa: BLE001
        return {n: RuntimeCandidate.unavailable(n, kind.get(n, "torch"), f"eager forward fails on the example input "
                                                f"({one_line(exc)})", device) for n in include}
    out: dict[str, RuntimeCandidate] = {}
    for name in include:
        try:
            cand = _convert(name, module, example, device, make_session_options, providers, compile_budget_s)
        except Exception as exc:  # noqa: BLE001 - a failed conversion is a result, not an error
            out[name] = RuntimeCandidate.unavailable(name, kind.get(name, "torch"), f"conversion failed ({one_line(exc)})", device)
            continue
        if cand.available and check_outputs and name != "eager":
            problem = None
            for inputs, reference in references:
                try:
                    got = cand.predict(cand.prepare(inputs))
                    problem = _outputs_mismatch(reference, got, rtol, atol)
                except Exception as exc:  # noqa: BLE001
                    problem = f"running the converted model fails ({one_line(exc)})"
                if problem:
                    problem = f"at batch size {inputs[0].shape[0]}: {problem}"
                    break
            if problem:
                cand = RuntimeCandidate.unavailable(name, cand.kind, f"converted model is wrong: {problem}", device)
        out[name] = cand
    return out
