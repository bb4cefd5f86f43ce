"""ONNX Runtime: the ``onnx`` submission kind, and the ``onnxruntime`` runtime derived by export.

Both profile through ONNX Runtime's own profiler (``heptathlon.runners.profiling``), which opens
its own session over ``onnx_model`` with ``make_session_options``: the profile's options, so
both passes run the same configuration.
"""

from __future__ import annotations

import io
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from heptathlon.bench.errors import ModelError, SubmissionError, one_line
from heptathlon.runners.adapters.base import ModelAdapter, RuntimeConfig


class OrtConfig(RuntimeConfig):
    """``runtime: {onnxruntime: {...}}`` of a profile."""

    section = "onnxruntime"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"


def count_onnx_params(path) -> int:
    """Parameter count from the graph's initializers (derived from the artifact, never reported)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


def session_options_factory(profile) -> Callable[[], Any]:
    """The profile's SessionOptions (threads, graph optimisation), fresh for every session."""
    from heptathlon.runners.controls import ort_session_options

    def make() -> Any:
        so = ort_session_options(profile)[0]
        so.log_severity_level = 3
        return so

    return make


class OrtRuntime(ModelAdapter):
    """What the profiler needs from an ONNX Runtime adapter: the model bytes and the session's setup."""

    profiler = "onnxruntime"
    config = OrtConfig
    providers: tuple[str, ...] = ()
    make_session_options: Callable[[], Any] | None = None

    @property
    @abstractmethod
    def onnx_model(self) -> bytes:
        """The model the profiler opens its own session over."""

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": "onnxruntime", "runtime_version": ort.__version__}


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
               "tensor(bool)": np.bool_}


class OnnxAdapter(OrtRuntime):
    """``kind: onnx``: the submitted .onnx file (or the parent's derived int8 copy) in one session."""

    name = "onnxruntime"
    derivable = ()

    def load(self) -> None:
        import onnxruntime as ort

        from heptathlon.runners.controls import ort_session_options

        # The submitter's artifact, or the parent's derived copy for another precision (int8).
        self.artifact_path = self.folder / self.manifest.model.path
        self.model_path = Path(self.context.get("model_path_override") or self.artifact_path)
        so, providers, record = ort_session_options(self.profile)
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.model_path), sess_options=so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        dim0 = (self.session.get_inputs()[0].shape or [None])[0]
        # A graph exported with a fixed batch (an int, not a symbolic name) takes only that many
        # rows; the quality pass then runs at that batch size, and the run records why.
        self.fixed_batch = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        self._bind_inputs()
        self.records["onnxruntime"] = {**record, "providers_effective": self.session.get_providers()}
        self.providers = tuple(self.session.get_providers())
        self.make_session_options = session_options_factory(self.profile)
        self.details = {"how": "the submitted ONNX model, in the adapter's session"}

    @property
    def onnx_model(self) -> bytes:
        return self.model_path.read_bytes()  # read when the profiler asks, not at load

    def _bind_inputs(self) -> None:
        """Map the task's fields onto the graph's inputs by name and dtype (text and token tasks), or
        its features onto a one-input graph; a mismatch is one line naming both sides."""
        from heptathlon.bench.manifest import MANIFEST
        from heptathlon.runners.adapters.text import TextEncoder

        graph = [(i.name, _ORT_DTYPES.get(i.type), list(i.shape)) for i in self.session.get_inputs()]
        self.graph_inputs = graph
        spec = dict(self.context.get("input_spec") or {"type": "features", "fields": []})
        where = f"{MANIFEST}: field 'model.path' ({self.manifest.model.path})"
        shown = ", ".join(f"{n}:{'?' if d is None else np.dtype(d).name}{s}" for n, d, s in graph)
        self.encoder = None
        if spec["type"] == "features":
            if len(graph) != 1 or graph[0][1] is None or np.dtype(graph[0][1]).kind != "f":
                raise ModelError(f"{where}: the graph's inputs are [{shown}]; the task provides one float32 "
                                 f"feature array ({', '.join(spec['fields']) or 'x'}); a text model needs a text "
                                 "or tokens task")
            self.feed_dtype = graph[0][1]
            return
        text = self.manifest.model.text_spec
        if spec["type"] == "text" and not text.tokenizer:
            raise SubmissionError(f"{MANIFEST}: field 'model.text.tokenizer': an ONNX model on a text task needs "
                                  "a folder with its tokenizer (tokenizer.json, from tokenizer.save_pretrained)")
        seq_dims = {s[1] for _, _, s in graph if len(s) >= 2}
        fixed = next((d for d in seq_dims if isinstance(d, int) and d > 0), None)
        self.encoder = TextEncoder(self.folder / (text.tokenizer or "."), text, spec, model_max=None,
                                   where=where, fixed_length=fixed)
        provided = self.encoder.provides()
        missing = [n for n, _, _ in graph if n not in provided]
        if missing or any(d is None or np.dtype(d).kind not in "iu" for _, d, _ in graph):
            raise ModelError(f"{where}: the graph's inputs are [{shown}]; the task provides "
                             f"[{', '.join(provided)}] (int64, from its {spec['type']}); cannot feed "
                             f"{missing or 'a non-integer input'}")
        self.feed_names = [(n, d) for n, d, _ in graph]

    def prepare(self, batch: np.ndarray) -> Any:
        if self.encoder is None:
            return {self.input_name: np.ascontiguousarray(batch, dtype=self.feed_dtype)}
        fields = self.encoder.encode(batch)  # tokenisation, timed on its own, outside the model call
        return {n: np.ascontiguousarray(fields[n], dtype=d) for n, d in self.feed_names}

    def predict(self, prepared: Any) -> Any:
        return self.session.run(None, prepared)[0]

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "params": count_onnx_params(self.artifact_path),
               "params_method": "artifact:onnx-initializers",
               "graph_inputs": [{"name": n, "dtype": None if d is None else np.dtype(d).name,
                                 "shape": [str(x) for x in s]}
                                for n, d, s in self.graph_inputs]}
        if self.encoder is not None:
            out["text"] = self.encoder.record()
        return out


class OnnxSessionRuntime(OrtRuntime):
    """The ``onnxruntime`` runtime derived from a torch module: an export, in a session of its own.

    Inputs map positionally onto the session's inputs and become contiguous numpy arrays in
    ``prepare``, outside the timed call; ``predict`` returns every output.
    """

    name = "onnxruntime"

    def __init__(self, session: Any, model_bytes: bytes, *, device: str = "cpu",
                 make_session_options: Callable[[], Any] | None = None, convert_s: float | None = None) -> None:
        super().__init__(None, None, None)
        self.session, self._model_bytes, self.device = session, model_bytes, device
        self.make_session_options, self.convert_s = make_session_options, convert_s
        self.providers = tuple(session.get_providers())
        self.input_names = [i.name for i in session.get_inputs()]
        self.details = {"inputs": self.input_names}

    @classmethod
    def from_model(cls, model: bytes | str | Path, *, device: str = "cpu", providers: Sequence[Any] | None = None,
                   make_session_options: Callable[[], Any] | None = None,
                   convert_s: float | None = None) -> ModelAdapter:
        """A session over exported bytes or an .onnx file; unavailable (with the reason) where it cannot open."""
        try:
            import onnxruntime as ort
        except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
            return cls.unavailable(f"onnxruntime cannot be imported ({one_line(exc)})", device)
        model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
        if providers is None:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
        # A provider is a name or (name, options), as controls.ort_session_options gives them.
        missing = [p for p in providers if (p[0] if isinstance(p, (tuple, list)) else p) not in ort.get_available_providers()]
        if missing:
            return cls.unavailable(f"execution providers {missing} are not in this onnxruntime build "
                                   f"(available: {ort.get_available_providers()})", device)
        try:
            opts = make_session_options() if make_session_options else ort.SessionOptions()
            session = ort.InferenceSession(model_bytes, sess_options=opts, providers=list(providers))
        except Exception as exc:  # noqa: BLE001
            return cls.unavailable(f"session creation failed ({one_line(exc)})", device)
        return cls(session, model_bytes, device=device, make_session_options=make_session_options, convert_s=convert_s)

    @classmethod
    def derive(cls, module: Any, example: tuple, device: str, options: Any) -> ModelAdapter:
        t0 = time.perf_counter()
        model_bytes, how = export_onnx(module, example)  # the graph is device-agnostic; providers pick the device
        rt = cls.from_model(model_bytes, device=device, providers=options.providers,
                            make_session_options=options.make_session_options, convert_s=time.perf_counter() - t0)
        if rt.available:
            rt.details["how"] = how
        return rt

    @property
    def onnx_model(self) -> bytes:
        return self._model_bytes

    def load(self) -> None:
        """Nothing left to do: ``from_model`` opened the session."""

    def prepare(self, batch: Any) -> dict:
        arrays = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if len(arrays) != len(self.input_names):
            raise ModelError(f"model takes {len(self.input_names)} inputs {self.input_names}, batch has {len(arrays)}")
        out = {}
        for n, a in zip(self.input_names, arrays):
            if hasattr(a, "detach"):
                a = a.detach().cpu().numpy()
            out[n] = np.ascontiguousarray(a)
        return out

    def predict(self, feeds: dict) -> Any:
        return self.session.run(None, feeds)

    def postprocess(self, raw: Any, n: int):
        return super().postprocess(raw[0], n)


def export_onnx(module: Any, example: tuple, *, dynamic_batch: bool = True) -> tuple[bytes, str]:
    """Export to ONNX bytes; returns (model bytes, exporter used).

    torch 2.13's default is the torch.export-based exporter (``dynamo=True``, needs onnxscript).
    Where it fails (graph breaks, data-dependent control flow) the legacy TorchScript-based
    exporter is tried; both errors are reported if neither works.
    """
    import torch

    if dynamic_batch and example and example[0].shape[0] == 1:
        # torch.export specialises a dimension of size 1 to a constant, so export with batch >= 2.
        example = tuple(torch.cat([t, t], dim=0) for t in example)
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
