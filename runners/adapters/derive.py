"""Derive the registry's runtimes from one torch module: eager, TorchScript, torch.compile, ONNX Runtime.

The framework-tax event compares runtimes on the same model (Fernandez et al. 2023, sec. 5).
Each derived runtime is an adapter (registry.RUNTIMES); a conversion that fails, or whose
outputs disagree with eager, is that adapter unavailable with the reason, never an exception:
one runtime failing must not fail the run.

A batch is a tensor or a tuple of tensors with the batch on dim 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from heptathlon.bench.errors import one_line
from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.adapters.registry import RUNTIMES, runtime_class


@dataclass(frozen=True)
class DeriveOptions:
    """What a derived runtime's ``derive`` may use besides the module and the example."""

    make_session_options: Callable[[], Any] | None = None  # the profile's ORT options
    providers: Sequence[Any] | None = None  # ORT providers (names or (name, options)); None = by device
    compile_budget_s: float | None = None  # torch.compile's first compilation; None = unbounded


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


def _check(rt: ModelAdapter, references: list, rtol: float, atol: float) -> str | None:
    """Why ``rt`` is a wrong model (at the first batch size where it is), or None."""
    for inputs, reference in references:
        try:
            problem = _outputs_mismatch(reference, rt.predict(rt.prepare(inputs)), rtol, atol)
        except Exception as exc:  # noqa: BLE001
            problem = f"running the converted model fails ({one_line(exc)})"
        if problem:
            return f"at batch size {inputs[0].shape[0]}: {problem}"
    return None


def derive_runtimes(module: Any, example_input: Any, *, device: str = "cpu", include: Sequence[str] = RUNTIMES,
                    make_session_options: Callable[[], Any] | None = None,
                    providers: Sequence[Any] | None = None, check_outputs: bool = True,
                    rtol: float = 1e-3, atol: float = 1e-4,
                    compile_budget_s: float | None = None) -> dict[str, ModelAdapter]:
    """Every runtime in ``include`` for one eval-mode module, keyed by name, in ``include`` order.

    Each converted runtime runs ``example_input`` and a batch one row larger; where its outputs
    differ from eager's beyond (rtol, atol) it is unavailable, since comparing the speed of a
    wrong model means nothing. The second batch size catches conversions that froze the batch
    dimension (a trace that baked in a shape, an export without a dynamic axis), which a batch
    sweep needs. ``compile_budget_s`` bounds torch.compile's first compilation (unbounded when
    None); a compile past it is unavailable ("skipped: ..."). Never raises for a failed conversion;
    an unknown name is a caller error (ValueError).
    """
    import torch

    classes = {name: runtime_class(name) for name in include}
    options = DeriveOptions(make_session_options, providers, compile_budget_s)
    module = module.eval().to(device)
    example = tuple(t.to(device) for t in (example_input if isinstance(example_input, (tuple, list)) else (example_input,)))
    other = tuple(torch.cat([t, t[:1]], dim=0) for t in example)  # batch + 1
    try:
        with torch.inference_mode():
            references = [(example, module(*example)), (other, module(*other))]
    except Exception as exc:  # noqa: BLE001
        return {n: cls.unavailable(f"eager forward fails on the example input ({one_line(exc)})", device)
                for n, cls in classes.items()}
    out: dict[str, ModelAdapter] = {}
    for name, cls in classes.items():
        try:
            rt = cls.derive(module, example, device, options)
        except Exception as exc:  # noqa: BLE001 - a failed conversion is a result, not an error
            out[name] = cls.unavailable(f"conversion failed ({one_line(exc)})", device)
            continue
        problem = _check(rt, references, rtol, atol) if rt.available and check_outputs and name != "eager" else None
        out[name] = cls.unavailable(f"converted model is wrong: {problem}", device) if problem else rt
    return out
