"""Framework tax of decoding: the share of one decode step's time (one new token per sequence, KV
cache in place) that is outside compute kernels, at batch 1 and larger, per runtime.

    python benchmarks/decode_framework_tax.py [--model tiny|small] [--batches 1,8] [--prompt 32] [--repeats 30]

The step is exactly the bundled engine's (``runners/adapters/causal_lm.py``): ``model(input_ids=
next[:, None], attention_mask, position_ids, cache)`` then argmax and ``.tolist()``. Each profiled
call is one step; the cache grows by one position per call (``--repeats`` steps after a prefill of
``--prompt`` tokens), as it does in a real decode. FT = (T_wall - T_compute) / T_wall per call
through ``runners.profiling.profile_torch_cpu`` (torch.profiler, compute = self time of compute
operators; docs/framework-tax.md), median over calls with a bootstrap CI; the profiler's own cost
is bounded by ``tax_lower_bound`` (unprofiled calls).

Runtimes:
- **eager**: the transformers model as loaded;
- **torch.compile**: ``torch.compile(model, dynamic=True)`` (Inductor, CPU C++ kernels with
  kernel profiling on, as runners/adapters/torch_compile.py does), warmed up before profiling;
- **ONNX Runtime** (optimum's ``ORTModelForCausalLM``): reported as not available when optimum's
  ONNX export package cannot be installed beside this transformers (optimum-onnx 0.1.0 requires
  an older transformers than the 5.x the project pins; pip's resolver refuses the pair).

One intra-op thread (the cpu-1core profile's setting).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "submissions"))


def decode_step_fn(model, torch, batch: int, prompt: int, vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, prompt), generator=g)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    state = {"cache": getattr(out, "cache", None) or out.past_key_values, "next": out.logits[:, -1, :].argmax(-1),
             "mask": mask, "pos": torch.full((batch, 1), prompt - 1)}
    import inspect

    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def step(_):
        s = state
        s["mask"] = torch.cat([s["mask"], s["mask"].new_ones((batch, 1))], dim=1)
        s["pos"] = s["pos"] + 1
        with torch.inference_mode():
            o = model(input_ids=s["next"][:, None], attention_mask=s["mask"], position_ids=s["pos"], use_cache=True,
                      **{arg: s["cache"]})
            nxt = o.logits[:, -1, :].argmax(-1)
        nxt.tolist()
        s["cache"] = getattr(o, "cache", None) or o.past_key_values
        s["next"] = nxt

    return step


def ort_available() -> str | None:
    try:
        from optimum.onnxruntime import ORTModelForCausalLM  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"optimum.onnxruntime is not importable ({type(e).__name__}: {str(e)[:120]})"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "small"), default="tiny")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from _gpt2 import gpt2_random
    from heptathlon.runners.profiling import profile_torch_cpu

    torch.set_num_threads(1)
    batches = [int(b) for b in a.batches.split(",")]
    t = Table(title=f"decode-step framework tax, GPT-2 {a.model} (random weights), prompt {a.prompt}, 1 thread")
    for col in ("runtime", "batch", "step p50 ms (unprofiled)", "FT [95% CI]", "FT lower bound", "profiler inflation",
                "n"):
        t.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        gpt2_random(Path(tmp) / "m", a.model)
        base = AutoModelForCausalLM.from_pretrained(Path(tmp) / "m").eval()
        runtimes = [("eager", base)]
        if not a.no_compile:
            from torch._inductor import config as ic

            ic.cpp.enable_kernel_profile = True
            runtimes.append(("torch.compile", torch.compile(base, dynamic=True)))
        for name, model in runtimes:
            for b in batches:
                try:
                    step = decode_step_fn(model, torch, b, a.prompt, base.config.vocab_size)
                    d = profile_torch_cpu(step, None, repeats=a.repeats, warmup=5)
                except Exception as e:  # noqa: BLE001  a runtime that does not work here is a row saying so
                    t.add_row(name, str(b), "-", f"failed: {type(e).__name__}: {str(e)[:60]}", "-", "-", "-")
                    continue
                v = d.tax()
                if v.value is None:
                    t.add_row(name, str(b), "-", f"unavailable: {v.note}", "-", "-", "-")
                    continue
                det = d.details
                t.add_row(name, str(b), f"{det['unprofiled_wall_median_ms']:.3f}",
                          f"{v.value:.3f} [{v.ci_low:.3f}, {v.ci_high:.3f}]", f"{det['tax_lower_bound']:.3f}",
                          f"{det['profiler_inflation']:.2f}", str(v.n))
    why = ort_available()
    for b in batches:
        t.add_row("onnxruntime (optimum)", str(b), "-", f"not available: {why}" if why else "not built", "-", "-", "-")
    Console(width=160).print(t)


if __name__ == "__main__":
    main()
