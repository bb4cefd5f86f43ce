"""One saved BERT classifier through Heptathlon's fixed_batch scenario and optimum-benchmark's
inference scenario: forward p50 at the same batch B and sequence length S, one thread, one core
(docs/performance.md, "Same BERT through Heptathlon and optimum-benchmark").

Method. A random-weight BERT classifier (submissions/_text.py ``bert_base_classifier``; 4 layers,
hidden 256 by default, ``--bert-base`` for 12 x 768) is saved once to a temp folder. Per S, a
submission copy of it gets a task YAML whose JSONL text column holds 32 sentences of exactly S
tokens as the model sees them ([CLS] + S-2 one-token words + [SEP], every sentence re-encoded and
checked). Per (B, S), in one invocation, rounds in alternating order:

- **Heptathlon**: ``heptathlon.bench.cli run <copy> --scenario fixed_batch --batch-size B
  --no-meters`` on the cpu-1core profile (``--cpu N``: a copy pinned to core N). Tokenisation
  and padding happen in the adapter's ``prepare`` before the loop; the timed call is the
  model's forward under ``torch.inference_mode`` on the prepared (B, S) tensors. Metric:
  ``latency_p50_ms`` (per query = per forward of B instances) with its ``ci_low``/``ci_high``.
  The script checks the run's record: longest input S, padding share 0, one thread.
- **optimum-benchmark** (its own venv, ``--peer-python``, default ``$HEPTATHLON_PEER_PYTHON``):
  ``Benchmark.launch`` with the inline launcher, ``PyTorchConfig(device="cpu", model=<folder>,
  task="text-classification", library="transformers", no_weights=False)`` and
  ``InferenceConfig(latency=True, memory=False, energy=False, input_shapes={batch_size: B,
  sequence_length: S})``; the process is pinned to the same core with one torch thread.
  Metric: its ``forward`` latency p50.
- **bare loop** (diagnostic, both venvs, unless ``--no-bare``): ``model(**inputs)`` under
  ``torch.inference_mode`` timed with ``perf_counter_ns``, no harness: it splits a ratio into
  what the transformers version does and what either tool adds.

Each tool's wall time is the script's own clock around the child process: start to exit, model
build excluded (shared), the tool's import, load, warm-up, timed loop and result writing in.

    .venv/bin/python benchmarks/encoder_peer.py --peer-python /work/peer-venv/bin/python --cpu 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _peer import CHILD_PRELUDE, CHILD_ENV, REPO, check_peer, fail, fmt, profile_for, result_of, timed_run  # benchmarks/_peer.py

N_SENTENCES = 32

# Runs in the peer venv: one optimum-benchmark launch; argv[1] is a JSON object; prints one JSON line.
OPTIMUM_CODE = r'''
import json, os, sys
a = json.loads(sys.argv[1])
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if a["cpu"] is not None:
    os.sched_setaffinity(0, {a["cpu"]})
import torch
torch.set_num_threads(1)
torch.set_num_interop_threads(1)
import logging
logging.disable(logging.WARNING)
import importlib.metadata, transformers
from optimum_benchmark import Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig, PyTorchConfig
from optimum_benchmark.backends.pytorch.backend import PyTorchBackend
seen = {}
_prepare = PyTorchBackend.prepare_inputs
def prepare_inputs(self, inputs):  # once, before warm-up: what the timed forward gets
    out = _prepare(self, inputs)
    seen.update({k: {"shape": list(v.shape), "dtype": str(v.dtype), "min": int(v.min()), "max": int(v.max())}
                 for k, v in out.items()})
    seen["_attn"] = getattr(self.pretrained_model.config, "_attn_implementation", None)
    seen["_training"] = bool(self.pretrained_model.training)
    return out
PyTorchBackend.prepare_inputs = prepare_inputs
backend = PyTorchConfig(device="cpu", model=a["model"], task="text-classification", library="transformers",
                        no_weights=False)
scenario = InferenceConfig(memory=False, latency=True, energy=False, iterations=a["iterations"], duration=0,
                           warmup_runs=a["warmup"], input_shapes={"batch_size": a["B"], "sequence_length": a["S"]})
cfg = BenchmarkConfig(name="heptathlon-encoder-peer", launcher=InlineConfig(), scenario=scenario, backend=backend,
                      log_report=False, print_report=False)
d = Benchmark.launch(cfg).to_dict()
fw = d["forward"]["latency"]
out = {"versions": {"optimum-benchmark": importlib.metadata.version("optimum-benchmark"),
                    "transformers": transformers.__version__, "torch": torch.__version__},
       "threads": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0)),
       "forward_keys": sorted(fw), "report_keys": sorted(d["forward"]),
       "count": fw["count"], "p50_s": float(fw["p50"]), "mean_s": float(fw["mean"]), "stdev_s": float(fw["stdev"]),
       "first_forward_s": float(d["first_forward"]["latency"]["mean"]),
       "load_s": float(d["load_model"]["latency"]["mean"]), "inputs": seen}
print("RESULT " + json.dumps(out))
'''

# Runs in either venv: the forward alone, timed bare, on (B, S) inputs shaped like Heptathlon's.
BARE_CODE = CHILD_PRELUDE + r'''
import transformers
from transformers import AutoModelForSequenceClassification
transformers.logging.set_verbosity_error()
B, S = a["B"], a["S"]
m = AutoModelForSequenceClassification.from_pretrained(a["model"], local_files_only=True).eval()
g = torch.Generator().manual_seed(0)
feeds = {"input_ids": torch.randint(1000, m.config.vocab_size, (B, S), generator=g),
         "attention_mask": torch.ones((B, S), dtype=torch.long), "token_type_ids": torch.zeros((B, S), dtype=torch.long)}
pc = time.perf_counter_ns
ts = []
for it in range(a["warmup"] + a["iterations"]):
    t0 = pc()
    with torch.inference_mode():
        m(**feeds)
    t1 = pc()
    if it >= a["warmup"]:
        ts.append((t1 - t0) / 1e6)
ts.sort()
print("RESULT " + json.dumps({"p50_ms": ts[len(ts) // 2], "transformers": transformers.__version__,
                              "attn": getattr(m.config, "_attn_implementation", None)}))
'''


# ---- the model and the fixed-length text task ------------------------------------------------------
def build_model(out: Path, layers: int, hidden: int) -> int:
    sys.path.insert(0, str(REPO / "submissions"))
    from _text import bert_base_classifier

    return bert_base_classifier(out, layers=layers, hidden=hidden)


def fixed_length_sentences(model: Path, length: int, n: int, seed: int = 0) -> list[str]:
    """n sentences that encode to exactly ``length`` tokens with the tokenizer's special tokens
    ([CLS] ... [SEP]): whole-word vocabulary entries that are one token each, re-encoded and checked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    special = len(tok("a")["input_ids"]) - len(tok("a", add_special_tokens=False)["input_ids"])
    words = sorted(w for w in tok.get_vocab() if w.isascii() and w.isalpha() and w.islower() and len(w) > 2)
    single = [w for w in words if len(tok(w, add_special_tokens=False)["input_ids"]) == 1]
    if len(single) < 16 or length <= special:
        fail(f"cannot build sentences of {length} tokens with the tokenizer at {model}")
    rng, out = random.Random(seed), []
    for _ in range(100 * n):
        s = " ".join(rng.choice(single) for _ in range(length - special))
        if len(tok(s)["input_ids"]) == length:
            out.append(s)
            if len(out) == n:
                return out
    fail(f"could not build {n} sentences of exactly {length} tokens")


def write_submission(model: Path, folder: Path, length: int) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(model, folder / "model")
    rows = fixed_length_sentences(model, length, N_SENTENCES)
    (folder / "sentences.jsonl").write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                                                    for i, t in enumerate(rows)))
    (folder / "task.yaml").write_text(f"name: fixed-length-{length}\ndescription: {len(rows)} sentences of exactly "
                                      f"{length} BERT tokens ([CLS] and [SEP] included)\ndata: sentences.jsonl\n"
                                      "inputs: [text]\nlabel: label\ninput_type: text\n")
    (folder / "submission.yaml").write_text(f'name: bert-peer-s{length}\nversion: "1"\ntask: task.yaml\n'
                                            "model:\n  kind: transformers\n  path: model\n")
    return folder


# ---- the two tools --------------------------------------------------------------------------------
def run_heptathlon(folder: Path, b: int, s: int, queries: int, warmup: int, db: Path, profile: tuple[str, dict],
                   cpu: int) -> dict:
    if db.exists():
        db.unlink()
    cmd = [sys.executable, "-m", "heptathlon.bench.cli", "run", str(folder), "--scenario", "fixed_batch",
           "--batch-size", str(b), "--min-queries", str(queries), "--min-duration", "0.5", "--warmup", str(warmup),
           "--no-meters", "--db", f"sqlite:///{db}", "--profile", profile[0]]
    r, info = timed_run(cmd, profile[1], cpu, cwd=REPO)
    con = sqlite3.connect(db) if db.exists() else None
    row = con.execute("select id, status, error, extra from run").fetchone() if con else None
    if r.returncode != 0 or row is None or row[1] != "succeeded":
        tail = row[2] if row and row[2] else (r.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"Heptathlon run at B={b}, S={s} failed (exit {r.returncode}): {tail}")
    vals = {m: {"value": v, "ci_low": lo, "ci_high": hi, "n": n, "method": meth}
            for m, v, lo, hi, n, meth in con.execute(
                "select metric, value, ci_low, ci_high, n, method from measurement where run_id = ?", (row[0],))}
    extra = json.loads(row[3])
    text = extra["describe"].get("text") or {}
    if text.get("longest_seen") != s or (text.get("padding_share") or 0) != 0:
        fail(f"Heptathlon at S={s}: inputs were not exactly {s} tokens unpadded "
             f"(longest {text.get('longest_seen')}, padding share {text.get('padding_share')})")
    con.close()
    return {**info, "metrics": vals, "transformers": extra["describe"].get("transformers_version"),
            "n_queries": extra.get("n_queries")}


def run_optimum(peer: str, model: Path, b: int, s: int, iterations: int, warmup: int, cpu: int | None) -> dict:
    arg = json.dumps({"model": str(model), "B": b, "S": s, "iterations": iterations, "warmup": warmup, "cpu": cpu})
    out = result_of([peer, "-c", OPTIMUM_CODE, arg], f"optimum-benchmark at B={b}, S={s}",
                    {**os.environ, **CHILD_ENV}, cpu)
    if out["threads"] != 1 or (cpu is not None and out["affinity"] != [cpu]):
        fail(f"optimum-benchmark at B={b} ran on {out['threads']} threads, cores {out['affinity']}, not 1 on [{cpu}]")
    ids = out["inputs"].get("input_ids", {})
    if ids.get("shape") != [b, s]:
        fail(f"optimum-benchmark at B={b}, S={s} fed input_ids of shape {ids.get('shape')}")
    return out


def run_bare(python: str, model: Path, b: int, s: int, iterations: int, cpu: int | None) -> dict:
    arg = json.dumps({"model": str(model), "B": b, "S": s, "iterations": iterations, "warmup": 5, "cpu": cpu})
    return result_of([python, "-c", BARE_CODE, arg], f"bare loop ({python}) at B={b}, S={s}",
                     {**os.environ, **CHILD_ENV}, cpu)


# ---- the table ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,8", help="comma-separated B")
    ap.add_argument("--seq-lengths", default="32,128", help="comma-separated S (tokens, [CLS] and [SEP] included)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--bert-base", action="store_true", help="the real BERT-base shape: 12 layers, hidden 768")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per (B, S), the tools' order alternating")
    ap.add_argument("--queries", type=int, default=60, help="Heptathlon timed queries (forwards) per run")
    ap.add_argument("--warmup", type=int, default=10, help="Heptathlon warm-up queries (at batch B)")
    ap.add_argument("--iterations", type=int, default=60, help="optimum-benchmark timed forwards")
    ap.add_argument("--peer-warmup", type=int, default=10, help="optimum-benchmark warmup_runs")
    ap.add_argument("--peer-python", default=os.environ.get("HEPTATHLON_PEER_PYTHON"),
                    help="python of the optimum-benchmark venv (default $HEPTATHLON_PEER_PYTHON)")
    ap.add_argument("--cpu", type=int, default=0, help="the one core every tool runs on: 0 is the cpu-1core "
                                                       "profile; another core runs a copy of it pinned there")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-loop diagnostic")
    ap.add_argument("--json", type=Path, default=None, help="also write every raw number here")
    args = ap.parse_args()
    bs = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    ss = [int(x) for x in args.seq_lengths.split(",") if x.strip()]
    layers, hidden = (12, 768) if args.bert_base else (args.layers, args.hidden)
    if not bs or not ss or min(bs) < 1 or min(ss) < 3:
        fail("need batch sizes >= 1 and sequence lengths >= 3")
    peer = check_peer(args.peer_python)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="encoder_peer_"))
    try:
        n_params = build_model(work / "model", layers, hidden)
        profile = profile_for(args.cpu, work)
        raw: dict = {"points": [], "layers": layers, "hidden": hidden, "params": n_params, "cpu": args.cpu}
        loads: list[float] = []
        i = 0
        for s in ss:
            folder = write_submission(work / "model", work / f"submission-s{s}", s)
            model = folder / "model"  # both tools read the same saved folder
            for b in bs:
                hs, os_, bare = [], [], {}
                for r in range(args.rounds):
                    order = ["heptathlon", "optimum"] if (r + i) % 2 == 0 else ["optimum", "heptathlon"]
                    for tool in order:
                        if tool == "heptathlon":
                            hs.append(run_heptathlon(folder, b, s, args.queries, args.warmup, work / "h.db", profile,
                                                     args.cpu))
                        else:
                            os_.append(run_optimum(peer, model, b, s, args.iterations, args.peer_warmup, args.cpu))
                        loads.append(os.getloadavg()[0])
                    if not args.no_bare:
                        for name, py in [("heptathlon venv", sys.executable), ("peer venv", peer)][::1 - 2 * (r % 2)]:
                            bare.setdefault(name, []).append(run_bare(py, model, b, s, 40, args.cpu))
                    print(f"B={b} S={s} round {r + 1}/{args.rounds} done ({' then '.join(order)}), "
                          f"{time.time() - started:.0f} s", file=sys.stderr)
                raw["points"].append({"B": b, "S": s, "heptathlon": hs, "optimum": os_, "bare": bare or None})
                i += 1
        raw["load"] = [min(loads), max(loads)]
        o0 = raw["points"][0]["optimum"][0]
        raw["versions"] = {"heptathlon transformers": raw["points"][0]["heptathlon"][0]["transformers"],
                           **{f"peer {k}": v for k, v in o0["versions"].items()}}
        raw["peer_inputs"] = o0["inputs"]
        raw["peer_report_keys"] = {"forward": o0["report_keys"], "latency": o0["forward_keys"]}
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=str))
        print_table(raw, time.time() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(raw: dict, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    n = len(raw["points"][0]["heptathlon"])
    t = Table(caption="median of rounds \\[min-max]; CI: Heptathlon's own, of the median round; optimum reports none",
              title=f"Forward p50, same BERT ({raw['layers']} layers, hidden {raw['hidden']}, "
                    f"{raw['params'] / 1e6:.1f}M params), 1 thread: Heptathlon fixed_batch latency_p50_ms vs "
                    f"optimum-benchmark forward p50; median of {n} rounds [range]")
    for c in ("B", "S", "Heptathlon ms", "its 95% CI", "optimum ms", "ratio H/O", "bare H venv ms",
              "bare peer venv ms", "H wall s", "O wall s", "contention H / O"):
        t.add_column(c, justify="right")
    for p in raw["points"]:
        h = [x["metrics"]["latency_p50_ms"] for x in p["heptathlon"]]
        hv = [x["value"] for x in h]
        ov = [x["p50_s"] * 1e3 for x in p["optimum"]]
        ci = h[int(np.argsort(hv)[len(hv) // 2])]  # the CI of the median round
        ratio = float(np.median(np.divide(hv, ov)))
        bare = p["bare"] or {}
        bh = fmt([x["p50_ms"] for x in bare["heptathlon venv"]]) if bare else ""
        bp = fmt([x["p50_ms"] for x in bare["peer venv"]]) if bare else ""
        con = " / ".join(f"{float(np.median([x.get('contention_share', 0) for x in p[k]])):.2f}"
                         for k in ("heptathlon", "optimum"))
        t.add_row(str(p["B"]), str(p["S"]), fmt(hv), f"{ci['ci_low']:.3g}-{ci['ci_high']:.3g}", fmt(ov),
                  f"{ratio:.2f}", bh, bp, fmt([x["wall_s"] for x in p["heptathlon"]]),
                  fmt([x["wall_s"] for x in p["optimum"]]), con)
    Console(width=200).print(t)
    keys = raw["peer_report_keys"]
    print(f"CI: Heptathlon latency_p50_ms has ci_low/ci_high ({raw['points'][0]['heptathlon'][0]['metrics']['latency_p50_ms']['method']}); "
          f"optimum-benchmark's forward report has {keys['forward']}, its latency {keys['latency']}: "
          f"{'no CI' if not any('ci' in k for k in keys['latency']) else 'a CI'}")
    print("optimum's inputs: " + ", ".join(f"{k} {v['shape']} [{v['min']}..{v['max']}]" for k, v in
                                           raw["peer_inputs"].items() if not k.startswith("_"))
          + f"; attention {raw['peer_inputs'].get('_attn')}")
    v = raw["versions"]
    print("versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + f"; load average "
          f"{raw['load'][0]:.1f}-{raw['load'][1]:.1f} on {os.cpu_count()} CPUs; {elapsed:.0f} s in all")


if __name__ == "__main__":
    main()
