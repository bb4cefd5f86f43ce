"""Precision: a profile changes the numerics a model runs in, never its weights.

- int8: ONNX Runtime's dynamic quantization of the submitted fp32 ONNX model (weights
  quantized once, activations per batch at run time), cached by the model's content hash.
- bf16: torch models cast with ``module.to(torch.bfloat16)``, inputs cast to match. On CPU.
- fp16: torch models on CUDA (``module.to(torch.float16)``).
- tf32 is not a precision of its own: it is fp32 with ``gpu.tf32`` on (heptathlon.runners.controls).

The quantized or cast model is derived from the submitter's artifact every time; nothing a
submission ships is trusted to be the "int8 version" of itself.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError

INT8_SCHEME = "dynamic-qint8-per-tensor"
# Nodes that only exist in a graph that dynamic quantization rewrote.
_QUANTIZED_OPS = frozenset({"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                            "QAttention", "DynamicQuantizeLSTM", "QGemm", "MatMulIntegerToFloat"})


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _where(profile_name: str | None) -> str:
    return f"profile {profile_name!r}: " if profile_name else ""


def _count_quantized(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in model.graph.node if n.op_type in _QUANTIZED_OPS)


def quantize_onnx_int8(model_path: Path, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """int8 copy of an fp32 ONNX model, made once per content hash and kept in ``cache_dir``.

    Gemm nodes are first rewritten as MatMul + Add (ONNX Runtime's own
    ``ONNXModel.replace_gemm_with_matmul``): dynamic quantization has no integer Gemm, and
    torch exports every nn.Linear as Gemm, so without it most MLPs would stay fp32.
    """
    import onnxruntime as ort

    model_path = Path(model_path)
    cache_dir = Path(cache_dir)
    source_sha = file_sha256(model_path)
    target = cache_dir / f"{source_sha}-int8-{INT8_SCHEME}-ort{ort.__version__}.onnx"
    record: dict[str, Any] = {"requested": "int8", "mechanism": "onnxruntime.quantization.quantize_dynamic "
                              "(QInt8 weights, per tensor; Gemm rewritten as MatMul+Add)",
                              "source_sha256": source_sha, "path": str(target)}
    if target.exists():
        record["cache_hit"] = True
    else:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.onnx_model import ONNXModel

        cache_dir.mkdir(parents=True, exist_ok=True)
        model = onnx.load(str(model_path))
        n_gemm = sum(1 for n in model.graph.node if n.op_type == "Gemm")
        wrapped = ONNXModel(model)
        wrapped.replace_gemm_with_matmul()
        # The rewrite transposes weights in place; shape hints that exporters (torch's dynamo
        # exporter) record for initializers would now contradict them, so drop those hints.
        inits = {i.name for i in model.graph.initializer}
        stale = [v for v in model.graph.value_info if v.name in inits]
        for v in stale:
            model.graph.value_info.remove(v)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".onnx.tmp")
        os.close(fd)
        try:
            quantize_dynamic(wrapped.model, tmp, weight_type=QuantType.QInt8, per_channel=False)
            os.replace(tmp, target)  # atomic: a concurrent run sees the whole file or none
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        record.update(cache_hit=False, gemm_rewritten=n_gemm)
    record["artifact_sha256"] = file_sha256(target)
    record["quantized_nodes"] = _count_quantized(target)
    record["effective"] = "int8" if record["quantized_nodes"] else "fp32"
    record["took_effect"] = record["quantized_nodes"] > 0
    return target, record


def prepare_onnx_precision(model_path: Path, precision: str, cache_dir: Path, *, device: str = "cpu",
                           profile_name: str | None = None,
                           best_effort: bool = False) -> tuple[Path, dict[str, Any]]:
    """The ONNX file to load under ``precision``, and how it was obtained.

    fp32 loads the artifact as is; int8 loads the cached quantized copy. fp16 and bf16 have
    no graph conversion here (onnxconverter-common is not a dependency), so they raise
    ProfileError unless ``best_effort`` (the profile lists 'precision'), which runs fp32 and
    records took_effect=False.
    """
    model_path = Path(model_path)
    if precision == "fp32":
        return model_path, {"requested": "fp32", "effective": "fp32", "mechanism": "artifact as submitted",
                            "took_effect": True}
    reason = None
    if precision == "int8" and device == "cpu":
        path, rec = quantize_onnx_int8(model_path, cache_dir)
        if rec["took_effect"]:
            return path, rec
        reason = "the model has no operator that dynamic int8 quantization handles (MatMul, Gemm, Conv, ...)"
    elif precision == "int8":
        reason = "int8 (dynamic quantization) runs on CPU execution providers only"
    else:
        reason = f"{precision} is not supported for ONNX models here; use a torch submission or fp32/int8"
    if not best_effort:
        raise ProfileError(f"{_where(profile_name)}field 'precision': {reason}")
    return model_path, {"requested": precision, "effective": "fp32", "mechanism": None, "took_effect": False,
                        "reason": reason}


def _torch_dynamic_int8(module: Any, device: str, profile_name: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """int8 for torch models: torch's own dynamic quantisation of Linear layers (weights int8,
    activations quantised per batch), the counterpart of ORT's quantize_dynamic."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    if torch.device(device).type != "cpu":
        raise ProfileError(f"{_where(profile_name)}field 'precision': int8 (dynamic quantization) runs on CPU only")
    if isinstance(module, torch.jit.ScriptModule):
        raise ProfileError(f"{_where(profile_name)}field 'precision': int8 needs an eager torch module "
                           "(kind: torch); TorchScript modules cannot be re-quantized")
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in module.modules())
    if n_linear == 0:
        raise ProfileError(f"{_where(profile_name)}field 'precision': the model has no Linear layer that "
                           "dynamic int8 quantization handles")
    import warnings

    with warnings.catch_warnings():  # torch 2.13 marks torch.ao deprecated in favour of torchao; it still works
        warnings.simplefilter("ignore")
        qmodule = quantize_dynamic(module.to("cpu").eval(), {torch.nn.Linear}, dtype=torch.qint8)
    record = {"requested": "int8", "effective": "int8", "mechanism": "torch.ao.quantization.quantize_dynamic(Linear)",
              "quantized_layers": n_linear, "input_dtype": "float32", "device": "cpu", "took_effect": True}
    return qmodule, torch.float32, record


def prepare_torch_precision(module: Any, precision: str, device: str = "cpu", *,
                            profile_name: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(module on ``device`` in ``precision``, dtype to cast inputs to, record).

    Outputs come back in that dtype too: cast them with ``.float()`` before scoring. The
    record says whether the CPU has native bf16 instructions (AVX512-BF16/AMX); without
    them torch emulates bf16, which is correct but slow.
    """
    import torch

    dev = torch.device(device)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "int8":
        return _torch_dynamic_int8(module, device, profile_name)
    if precision not in dtypes:
        raise ProfileError(f"{_where(profile_name)}field 'precision': {precision} applies to ONNX models only "
                           f"(onnxruntime dynamic quantization); torch models run fp32, bf16 or fp16")
    if precision == "fp16" and dev.type != "cuda":
        raise ProfileError(f"{_where(profile_name)}field 'precision': fp16 runs on device: cuda only")
    dtype = dtypes[precision]
    module = module.to(device=dev, dtype=dtype)
    module.eval()
    float_params = [p for p in module.parameters() if p.is_floating_point()]
    float_params += [b for b in module.buffers() if b.is_floating_point()]
    took_effect = all(p.dtype == dtype for p in float_params)
    record: dict[str, Any] = {"requested": precision, "effective": precision if took_effect else "mixed",
                              "mechanism": "artifact as submitted" if precision == "fp32"
                              else f"module.to({dtype}) + input cast",
                              "input_dtype": str(dtype).removeprefix("torch."), "device": str(dev),
                              "took_effect": took_effect}
    if precision == "bf16" and dev.type == "cpu":
        from heptathlon.bench.fingerprint import cpu_flags

        flags = set(cpu_flags())
        record["native_bf16"] = bool(flags & {"avx512_bf16", "amx_bf16"})
    return module, dtype, record
