"""ONNX Runtime adapter."""

from __future__ import annotations

from typing import Any

import numpy as np

from runners.adapters.base import ModelAdapter

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def count_onnx_params(path) -> int:
    """Parameter count from the graph's initializers (derived from the artifact, never reported)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


class OnnxAdapter(ModelAdapter):
    def load(self) -> None:
        import onnxruntime as ort

        model_path = self.context.get("model_path_override") or (self.folder / self.manifest.model.path)
        self.model_path = model_path
        rt = self.profile.runtime.onnxruntime
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.profile.cpu.threads
        so.inter_op_num_threads = self.profile.cpu.interop_threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[rt.graph_optimization])
        so.log_severity_level = 3
        available = ort.get_available_providers()
        providers = [p for p in rt.providers if p in available]
        if not providers:
            raise RuntimeError(f"profile {self.profile.name!r}: field 'runtime.onnxruntime.providers': none of "
                               f"{rt.providers} is available here (available: {available})")
        self.session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.records["onnxruntime"] = {"providers": self.session.get_providers(),
                                       "intra_op_num_threads": so.intra_op_num_threads,
                                       "graph_optimization": rt.graph_optimization}

    def prepare(self, batch: np.ndarray) -> Any:
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def predict(self, prepared: Any) -> Any:
        return self.session.run(None, prepared)[0]

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": "onnxruntime", "runtime_version": ort.__version__,
                "params": count_onnx_params(self.model_path), "params_method": "artifact:onnx-initializers"}
