"""ONNX Runtime adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from heptathlon.runners.adapters.base import ModelAdapter


def count_onnx_params(path) -> int:
    """Parameter count from the graph's initializers (derived from the artifact, never reported)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


class OnnxAdapter(ModelAdapter):
    def load(self) -> None:
        import onnxruntime as ort

        from heptathlon.runners.controls import ort_session_options

        # The submitter's artifact, or the parent's derived copy for another precision (int8).
        self.artifact_path = self.folder / self.manifest.model.path
        model_path = Path(self.context.get("model_path_override") or self.artifact_path)
        so, providers, record = ort_session_options(self.profile)
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.records["onnxruntime"] = {**record, "providers_effective": self.session.get_providers()}

    def prepare(self, batch: np.ndarray) -> Any:
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def predict(self, prepared: Any) -> Any:
        return self.session.run(None, prepared)[0]

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": "onnxruntime", "runtime_version": ort.__version__,
                "params": count_onnx_params(self.artifact_path), "params_method": "artifact:onnx-initializers"}
