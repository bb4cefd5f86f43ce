"""Do numerics move a group's outcomes? Sweep the bundled group-task models over the CPU
precisions (torch: bf16, fp16; ONNX: int8 dynamic quantisation, the cpu-1core-int8 derivation)
against fp32, in-process (predictions only, no timing), and print each one's hardware-induced
disparity with its paired-bootstrap 95% CI (heptathlon.bench.fairness.compare_to_reference).

Two models of our own design. The *outlier* variant (submissions/arrests-mlp-outlier-onnx): a
dead hidden unit with large input weights, which changes no fp32 prediction but coarsens per-tensor
int8 quantisation of the whole first layer. The *knife-edge* variant: the arrests MLP with its last layer
scaled by --scale (default 1/4096). Scaling does not change a single fp32 prediction (argmax is
scale-invariant), but it shrinks the logit margins until bf16/fp16 rounding decides some of them,
and examples close to the boundary are not spread evenly over groups.

    python benchmarks/fairness_numerics_sweep.py            # prints a Markdown table
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heptathlon.bench.fairness import ZERO_NOTE, compare_to_reference, zero_note  # noqa: E402
from heptathlon.bench.tasks import resolve_task  # noqa: E402


def torch_module(folder: Path):
    import torch

    spec = importlib.util.spec_from_file_location(f"m_{folder.name}", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.build()
    m.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu"))
    return m.eval()


def torch_preds(m, x: np.ndarray, dtype) -> np.ndarray:
    import torch

    with torch.inference_mode():
        mm = copy.deepcopy(m).to(dtype)
        return mm(torch.from_numpy(x.astype(np.float32)).to(dtype)).float().argmax(1).numpy()


def onnx_preds(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]
    return out.argmax(1) if out.ndim == 2 else out


def report_rows(name, data, ref, pred, precision):
    rows = []
    cols = list(data.groups.columns)
    for attrs in [[c] for c in cols] + ([cols] if len(cols) > 1 else []):
        rep = compare_to_reference(data.y_test, ref, pred, data.groups[attrs], n_resamples=1000, task=data.name)
        d, xi = rep.hw_disparity, rep.xi
        flips = int(np.sum(ref != pred))
        sig = [g.group for g in rep.groups if g.mcnemar_p < 0.05]
        rows.append(f"| {name} | {precision} | {rep.attribute} | {d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
                    f"{' ' + ZERO_NOTE if zero_note(d.ci_low, d.ci_high) else ' **excludes 0**'} | "
                    f"{xi.value:.4f} [{xi.ci_low:.4f}, {xi.ci_high:.4f}] | {flips}/{len(ref)} | "
                    f"{', '.join(sig) or '—'} |")
    return rows


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1 / 4096)
    ap.add_argument("--outlier", type=float, nargs="+", default=[5.0, 20.0])
    args = ap.parse_args()
    print("| model | precision | attribute | hw_disparity [95% CI] | ξ [95% CI] | flipped "
          "| groups with McNemar p<0.05 |")
    print("|---|---|---|---|---|---|---|")
    for task_sub in ("arrests", "hearts"):
        folder = REPO / "submissions" / f"{task_sub}-mlp-torch"
        data = resolve_task(task_sub, folder).load()
        x = np.asarray(data.x_test, dtype=np.float32)
        m = torch_module(folder)
        ref = torch_preds(m, x, torch.float32)
        for prec, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            for r in report_rows(folder.name, data, ref, torch_preds(m, x, dt), prec):
                print(r)
        onnx = REPO / "submissions" / f"{task_sub}-mlp-onnx" / "model.onnx"
        if onnx.exists():
            from heptathlon.runners.quantize import prepare_onnx_precision

            q, _ = prepare_onnx_precision(onnx, "int8", Path(tempfile.mkdtemp()))
            oref = onnx_preds(onnx, x)
            for r in report_rows(onnx.parent.name, data, oref, onnx_preds(q, x), "int8"):
                print(r)
        if task_sub == "arrests":  # the knife-edge variant of our own design
            k = copy.deepcopy(m)
            last = [mod for mod in k.modules() if isinstance(mod, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.mul_(args.scale)
                last.bias.mul_(args.scale)
            kref = torch_preds(k, x, torch.float32)
            assert np.array_equal(kref, ref), "scaling changed an fp32 prediction"
            for prec, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                for r in report_rows(f"arrests knife-edge (last layer x{args.scale:g})", data, kref,
                                     torch_preds(k, x, dt), prec):
                    print(r)
            # the outlier variant (submissions/arrests-mlp-outlier-onnx/build.py): a dead hidden unit
            # with large input weights coarsens per-tensor int8 scales; fp32 unchanged
            for mag in args.outlier:
                o = copy.deepcopy(m)
                lin = [mod for mod in o.modules() if isinstance(mod, torch.nn.Linear)]
                with torch.no_grad():
                    u = int(torch.argmin(lin[0].weight.abs().sum(1)))
                    lin[0].weight[u, :] = mag
                    lin[0].bias[u] = 0.0
                    lin[1].weight[:, u] = 0.0
                oref = torch_preds(o, x, torch.float32)
                assert np.array_equal(oref, ref), "the dead unit changed an fp32 prediction"
                q = torch.ao.quantization.quantize_dynamic(o, {torch.nn.Linear}, dtype=torch.qint8)
                with torch.inference_mode():
                    qp = q(torch.from_numpy(x)).argmax(1).numpy()
                for r in report_rows(f"arrests outlier unit (input weights {mag:g})", data, oref, qp,
                                     "int8 (torch dynamic, per-tensor)"):
                    print(r)


if __name__ == "__main__":
    main()
