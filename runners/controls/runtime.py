"""Runtime controls, once the runtime is imported: torch threads, device and numerics; ONNX
Runtime session options and providers."""


from __future__ import annotations

import os
from typing import Any

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners.controls.common import _not_applied, _record
from heptathlon.runners.controls.env import gpu_env


def apply_torch_threads(profile: Profile) -> dict[str, Any]:
    """Set torch's intra- and inter-op pools; called by torch adapters after importing torch."""
    import torch

    torch.set_num_threads(profile.cpu.threads)
    try:
        torch.set_num_interop_threads(profile.cpu.interop_threads)
    except RuntimeError:
        pass  # already set once in this process; the intra-op setting is what matters here
    return {"requested": profile.cpu.threads, "effective": torch.get_num_threads(),
            "mechanism": "torch.set_num_threads", "took_effect": torch.get_num_threads() == profile.cpu.threads,
            "interop": {"requested": profile.cpu.interop_threads, "effective": torch.get_num_interop_threads()}}


def torch_device(profile: Profile) -> str:
    """The torch device string the model should go to: 'cpu', or 'cuda:N' as the worker sees it."""
    if profile.device != "cuda":
        return "cpu"
    index = profile.gpu.index if profile.gpu else 0
    # With CUDA_VISIBLE_DEVICES from gpu_env() the chosen GPU is the only one, numbered 0.
    return "cuda:0" if os.environ.get("CUDA_VISIBLE_DEVICES") == str(index) else f"cuda:{index}"


def apply_torch_controls(profile: Profile) -> dict[str, Any]:
    """Torch backend flags and CUDA controls, after ``import torch`` and before the model loads.

    Covers threads, cudnn.benchmark, deterministic algorithms and, for CUDA profiles, the
    device index, TF32 on/off and the per-process memory fraction.
    """
    import torch

    from heptathlon.runners.adapters.torch_common import TorchConfig  # its section of the profile's runtime:

    rt = TorchConfig.of(profile)
    out: dict[str, Any] = {"cpu.threads": apply_torch_threads(profile)}
    torch.backends.cudnn.benchmark = rt.cudnn_benchmark
    out["runtime.torch.cudnn_benchmark"] = _record(rt.cudnn_benchmark, torch.backends.cudnn.benchmark,
                                                   "torch.backends.cudnn.benchmark",
                                                   torch.backends.cudnn.benchmark == rt.cudnn_benchmark)
    torch.use_deterministic_algorithms(rt.deterministic, warn_only=False)
    det = torch.are_deterministic_algorithms_enabled()
    out["runtime.torch.deterministic"] = _record(rt.deterministic, det, "torch.use_deterministic_algorithms",
                                                 det == rt.deterministic)
    if profile.device != "cuda":
        return out
    if not torch.cuda.is_available():
        raise ProfileError(f"profile {profile.name!r}: field 'device': 'cuda' but torch sees no GPU "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    gpu = profile.gpu
    device = torch_device(profile)
    index = int(device.split(":")[1])
    if index >= torch.cuda.device_count():
        out["gpu.index"] = _not_applied(profile, "gpu.index", f"{device} does not exist", gpu.index if gpu else 0)
    else:
        torch.cuda.set_device(index)
        mech = "CUDA_VISIBLE_DEVICES + torch.cuda.set_device" if device == "cuda:0" and gpu_env(profile) \
            else "torch.cuda.set_device"
        out["gpu.index"] = _record(gpu.index if gpu else 0, torch.cuda.current_device(), mech,
                                   torch.cuda.current_device() == index, device_name=torch.cuda.get_device_name(index))
    tf32 = gpu.tf32 if gpu else False
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    eff = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    out["gpu.tf32"] = _record(tf32, eff, "torch.backends.cuda.matmul.allow_tf32 + torch.backends.cudnn.allow_tf32",
                              eff == {"matmul": tf32, "cudnn": tf32})
    fraction = gpu.memory_fraction if gpu else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    eff_fraction = getter(index) if getter else None
    took = eff_fraction is None or abs(eff_fraction - fraction) < 1e-6
    out["gpu.memory_fraction"] = _record(fraction, eff_fraction, "torch.cuda.set_per_process_memory_fraction", took)
    return out


def ort_session_options(profile: Profile) -> tuple[Any, list[Any], dict[str, Any]]:
    """(SessionOptions, providers, record) for onnxruntime.InferenceSession under the profile."""
    import onnxruntime as ort

    from heptathlon.runners.adapters.onnx import OrtConfig  # its section of the profile's runtime:

    spec = OrtConfig.of(profile)
    so = ort.SessionOptions()
    so.intra_op_num_threads = profile.cpu.threads
    so.inter_op_num_threads = profile.cpu.interop_threads
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if profile.cpu.interop_threads == 1
                         else ort.ExecutionMode.ORT_PARALLEL)
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[spec.graph_optimization]
    available = ort.get_available_providers()
    missing = [p for p in spec.providers if p not in available]
    if missing:
        raise ProfileError(f"profile {profile.name!r}: field 'runtime.onnxruntime.providers': {missing} not "
                           f"available in onnxruntime {ort.__version__} here (available: {available})")
    providers: list[Any] = []
    for p in spec.providers:
        if p == "CUDAExecutionProvider":
            gpu = profile.gpu
            opts: dict[str, Any] = {"device_id": int(torch_device(profile).split(":")[1]),
                                    "use_tf32": int(bool(gpu and gpu.tf32))}
            if gpu and gpu.memory_fraction < 1.0:
                from heptathlon.bench.fingerprint import collect_gpus

                gpus = collect_gpus()[0]
                idx = gpu.index
                if idx < len(gpus) and gpus[idx]["memory_total_mib"]:
                    opts["gpu_mem_limit"] = int(gpus[idx]["memory_total_mib"] * 2**20 * gpu.memory_fraction)
            providers.append((p, opts))
        else:
            providers.append(p)
    record = {"intra_op_num_threads": so.intra_op_num_threads, "inter_op_num_threads": so.inter_op_num_threads,
              "graph_optimization": spec.graph_optimization, "providers": providers,
              "mechanism": "onnxruntime.SessionOptions"}
    return so, providers, record
