"""Heptathlon's generate scenario beside optimum-benchmark's text-generation metrics, on one saved
GPT-2-shaped model folder, same batch B, input length L and new tokens K (docs/validation/generate_peer.md).

Method. The tiny random GPT-2 (submissions/_gpt2.py) is saved once to a temp folder; a submission
copy gets a task YAML whose JSONL prompts are exactly L tokens under the model's own tokenizer
(space-led words that are one token each, checked by re-encoding). Per B, in one invocation and in
alternating order per round:

- **Heptathlon**: ``heptathlon.bench.cli run <copy> --scenario generate --concurrency B
  --max-new-tokens K --ignore-eos --no-meters`` (B=1: the single-stream mode), on the cpu-1core
  profile (core 0, one intra-op thread). The bundled engine batches the B in-flight requests as one
  static cohort (prefill together, decode together, all finish at the same step with --ignore-eos);
  the run's record says the cohort sizes, which the script checks are all B after warm-up.
  ``--cpu N`` (N != 0) runs a copy of cpu-1core pinned to core N (HEPTATHLON_PROFILES_DIR), so all
  three paths share one core; pick the core other work on the box leaves alone.
- **optimum-benchmark** (its own venv, ``--peer-python``, default ``$HEPTATHLON_PEER_PYTHON``):
  ``Benchmark.launch`` with the inline launcher, ``PyTorchConfig(device="cpu", model=<folder>,
  no_weights=False)`` and ``InferenceConfig(latency=True, input_shapes={batch_size: B,
  sequence_length: L}, generate_kwargs={max_new_tokens: K, min_new_tokens: K})``; the process is
  pinned to core 0 with one torch thread, as the profile does.
- **bare loop** (diagnostic, both venvs, unless ``--no-bare``): the engine's own calls (one
  prefill forward + argmax + ``.tolist()``, then K-1 cached decode forwards) timed directly with
  ``perf_counter_ns``, no harness and no ``generate()``: it splits a ratio into what the
  transformers version does and what either tool adds.

What the two tools' numbers mean, and where they differ (pairs are matched on meaning, and a
"comparable" row is derived where the stored definitions differ; comparable rows use medians on
both sides, since optimum's stored throughputs divide by a MEAN latency, which one preempted call
moves; every row is the median over rounds, and a "contention share" row says how much of the
core other processes took during each tool's runs):

- prefill latency: Heptathlon TTFT = issue of the request -> first token stamped in the harness
  after the prefill forward, its argmax and the host copy (p50 over requests). optimum's prefill =
  before ``model.generate()`` -> its logits processor's first call (after the prefill forward,
  before token selection), so it also holds ``generate()``'s set-up (config validation, cache
  creation). Its ``pytorch`` backend is a per-token backend, so prefill/decode come from ONE
  series of full ``generate(K)`` calls, not from a separate ``max_new_tokens=1`` run.
- prefill throughput: Heptathlon ``prefill_tokens_per_s`` = sum(prompt tokens) / sum(TTFT) over
  requests, i.e. L / TTFT per request: for a cohort of B it is NOT B*L / TTFT. optimum's is
  B / mean(prefill) in *samples*/s; times L for tokens/s. The comparable row is B*L / TTFT p50
  against B*L / prefill p50.
- per-token decode latency: Heptathlon TPOT = per request (last stamp - first stamp) / (K-1),
  median. optimum: decode latency = first logits-processor call -> ``generate()`` returns (K-1
  forwards plus bookkeeping) / (K-1); its ``per_token`` series is printed too, but in 0.6.0 it is
  never reset between ``generate`` calls of a session (pairs accumulate quadratically and include
  the gap across consecutive calls, which spans a prefill), so its mean is biased up; p50 is shown.
- decode throughput: Heptathlon ``output_tokens_per_s`` = all B*K tokens / window from the first
  issue to the last answer: prefill and the first token inside. optimum's decode throughput =
  B*(K-1) / mean(decode latency): prefill and first token outside. The comparable row is B / TPOT
  against B*(K-1) / decode p50.
  (optimum's ``generate`` throughput, labelled samples/s, is B*(K-1)/mean(generate) in 0.6.0's
  per-token path; the generate row divides B*K by its mean latency instead, as Heptathlon does.)
- warm-up: Heptathlon warms up with ``--warmup`` single-stream requests (B=1 shapes only); optimum
  runs two full generates plus ``warmup_runs`` two-token generates at batch B.

    .venv/bin/python benchmarks/generate_peer.py --peer-python /work/peer-venv/bin/python --cpu 1 \
        --batch-sizes 1,4 --input-len 32 --new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _peer import CHILD_PRELUDE, REPO, check_peer, fail, fmt, profile_for, result_of  # benchmarks/_peer.py

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
B, L, K = a["B"], a["L"], a["K"]
backend = PyTorchConfig(device="cpu", model=a["model"], task="text-generation", library="transformers",
                        no_weights=False)
scenario = InferenceConfig(memory=False, latency=True, energy=False, iterations=a["iterations"], duration=0,
                           warmup_runs=a["warmup"], input_shapes={"batch_size": B, "sequence_length": L},
                           generate_kwargs={"max_new_tokens": K, "min_new_tokens": K})
cfg = BenchmarkConfig(name="heptathlon-peer", launcher=InlineConfig(), scenario=scenario, backend=backend,
                      log_report=False, print_report=False)
d = Benchmark.launch(cfg).to_dict()
out = {"versions": {"optimum-benchmark": importlib.metadata.version("optimum-benchmark"), "transformers": transformers.__version__,
                    "torch": torch.__version__}, "threads": torch.get_num_threads(),
       "affinity": sorted(os.sched_getaffinity(0))}
for k in ("prefill", "decode", "per_token", "generate"):
    lat = d[k]["latency"]
    out[k] = {"count": lat["count"], "mean_s": float(lat["mean"]), "p50_s": float(lat["p50"]),
              "throughput": None if d[k].get("throughput") is None else
              {"value": float(d[k]["throughput"]["value"]), "unit": d[k]["throughput"]["unit"]}}
print("RESULT " + json.dumps(out))
'''

# Runs in either venv: the engine's own calls (runners/adapters/causal_lm.py), timed bare.
BARE_CODE = CHILD_PRELUDE + r'''
import transformers
from transformers import AutoModelForCausalLM
transformers.logging.set_verbosity_error()
B, L, K = a["B"], a["L"], a["K"]
m = AutoModelForCausalLM.from_pretrained(a["model"], local_files_only=True).eval()
g = torch.Generator().manual_seed(0)
ids = torch.randint(1, m.config.vocab_size, (B, L), generator=g)
pc = time.perf_counter_ns
pre, step = [], []
for it in range(a["warmup"] + a["iterations"]):
    mask = torch.ones((B, L), dtype=torch.long)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    t0 = pc()
    with torch.inference_mode():
        out = m(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        nxt = out.logits[:, -1, :].argmax(-1)
    nxt.tolist()
    t1 = pc()
    past, p = out.past_key_values, pos[:, -1:]
    for _ in range(K - 1):
        mask = torch.cat([mask, mask.new_ones((B, 1))], dim=1)
        p = p + 1
        with torch.inference_mode():
            out = m(input_ids=nxt[:, None], attention_mask=mask, position_ids=p, past_key_values=past, use_cache=True)
            nxt = out.logits[:, -1, :].argmax(-1)
        nxt.tolist()
        past = out.past_key_values
    t2 = pc()
    if it >= a["warmup"]:
        pre.append((t1 - t0) / 1e6)
        step.append((t2 - t1) / 1e6 / (K - 1))
pre.sort(); step.sort()
print("RESULT " + json.dumps({"prefill_ms": pre[len(pre) // 2], "step_ms": step[len(step) // 2],
                              "transformers": transformers.__version__}))
'''


# ---- the model and the fixed-length prompt task ---------------------------------------------------
def build_model(out: Path) -> Path:
    sys.path.insert(0, str(REPO / "submissions"))
    from _gpt2 import gpt2_random

    gpt2_random(out, "tiny")
    return out


def fixed_length_prompts(model: Path, length: int, n: int, seed: int = 0) -> list[str]:
    """n prompts of exactly ``length`` tokens under the model's tokenizer: space-led words that are
    one token each, every prompt re-encoded and checked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    words = sorted(t[1:] for t in tok.get_vocab() if t.startswith("\u0120") and t[1:].isascii() and t[1:].isalpha())
    single = [w for w in words if len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    if len(single) < 16:
        fail(f"the tokenizer at {model} has too few one-token words ({len(single)}) to build prompts")
    rng, out = random.Random(seed), []
    for _ in range(100 * n):
        s = "".join(" " + rng.choice(single) for _ in range(length))
        if len(tok(s, add_special_tokens=False)["input_ids"]) == length:
            out.append(s)
            if len(out) == n:
                return out
    fail(f"could not build {n} prompts of exactly {length} tokens")


def write_submission(model: Path, folder: Path, length: int) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(model, folder / "model")
    prompts = fixed_length_prompts(model, length, 32)
    (folder / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p, "label": 0}) + "\n" for p in prompts))
    (folder / "task.yaml").write_text(f"name: fixed-length-{length}\ndescription: {len(prompts)} prompts of exactly "
                                      f"{length} GPT-2-tokenizer tokens\ndata: prompts.jsonl\ninputs: [prompt]\n"
                                      "label: label\ninput_type: text\n")
    (folder / "submission.yaml").write_text(f'name: gpt2-tiny-peer-l{length}\nversion: "1"\ntask: task.yaml\n'
                                            "model:\n  kind: transformers\n  path: model\n")
    return folder


# ---- the two tools --------------------------------------------------------------------------------
def run_heptathlon(folder: Path, b: int, k: int, requests: int, warmup: int, db: Path, wait_quiet: bool,
                   profile: tuple[str, dict]) -> dict:
    if db.exists():
        db.unlink()
    cmd = [sys.executable, "-m", "heptathlon.bench.cli", "run", str(folder), "--scenario", "generate",
           "--max-new-tokens", str(k), "--ignore-eos", "--min-queries", str(requests), "--warmup", str(warmup),
           "--no-meters", "--db", f"sqlite:///{db}", "--profile", profile[0]]
    if b > 1:
        cmd += ["--concurrency", str(b), "--max-batch", str(b)]
    if wait_quiet:
        cmd += ["--wait-quiet", "--wait-quiet-timeout", "60"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO, env=profile[1])
    con = sqlite3.connect(db) if db.exists() else None
    row = con.execute("select id, status, error, extra from run").fetchone() if con else None
    if r.returncode != 0 or row is None or row[1] != "succeeded":
        tail = row[2] if row and row[2] else (r.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"Heptathlon run at B={b} failed (exit {r.returncode}): {tail}")
    vals = {m: v for m, v, p in con.execute("select metric, value, params from measurement where run_id = ?",
                                            (row[0],)) if "sweep" not in json.loads(p or "{}")}
    extra = json.loads(row[3])
    cohorts = extra["generate"]["cohorts"][warmup:]
    if set(cohorts) != {b}:
        fail(f"Heptathlon at B={b}: cohorts after warm-up were {sorted(set(cohorts))}, not all {b}")
    vals["_transformers"] = extra["describe"].get("transformers_version")
    con.close()
    return vals


def run_optimum(peer: str, model: Path, b: int, length: int, k: int, iterations: int, warmup: int,
                cpu: int | None) -> dict:
    arg = json.dumps({"model": str(model), "B": b, "L": length, "K": k, "iterations": iterations, "warmup": warmup,
                      "cpu": cpu})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = result_of([peer, "-c", OPTIMUM_CODE, arg], f"optimum-benchmark at B={b}", env, cpu)
    if out["threads"] != 1 or (cpu is not None and out["affinity"] != [cpu]):
        fail(f"optimum-benchmark at B={b} ran on {out['threads']} threads, cores {out['affinity']}, not 1 on [{cpu}]")
    return out


def run_bare(python: str, model: Path, b: int, length: int, k: int, iterations: int, cpu: int | None) -> dict:
    arg = json.dumps({"model": str(model), "B": b, "L": length, "K": k, "iterations": iterations, "warmup": 5,
                      "cpu": cpu})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return result_of([python, "-c", BARE_CODE, arg], f"bare loop ({python}) at B={b}", env, cpu)


# ---- the table ------------------------------------------------------------------------------------
def rows_for(b: int, length: int, k: int, h: dict, o: dict) -> list[tuple[str, float, float, str]]:
    """(quantity, Heptathlon, optimum, note) for one B; every time in ms, every rate in tokens/s."""
    pre_mean, pre_p50 = o["prefill"]["mean_s"] * 1e3, o["prefill"]["p50_s"] * 1e3
    dec_mean, dec_p50 = o["decode"]["mean_s"] * 1e3, o["decode"]["p50_s"] * 1e3
    ttft, tpot = h["ttft_p50_ms"], h["tpot_ms"]
    return [
        ("prefill latency ms", ttft, pre_p50, "TTFT p50 / prefill p50"),
        ("prefill latency ms (mean)", ttft, pre_mean, "TTFT p50 / prefill mean"),
        ("prefill tokens/s, as stored", h["prefill_tokens_per_s"], o["prefill"]["throughput"]["value"] * length,
         "sum L / sum TTFT (per request) / B*L / prefill mean"),
        ("prefill tokens/s, comparable", b * length / (ttft / 1e3), b * length / (pre_p50 / 1e3),
         "B*L / TTFT p50 / B*L / prefill p50"),
        ("decode ms per token", tpot, dec_p50 / (k - 1), "TPOT / decode p50 / (K-1)"),
        ("decode ms per token (mean)", tpot, dec_mean / (k - 1), "TPOT / decode mean / (K-1)"),
        ("decode ms per token (per_token p50)", tpot, o["per_token"]["p50_s"] * 1e3, "TPOT / per_token p50"),
        ("ITL p50 ms", h["itl_p50_ms"], o["per_token"]["p50_s"] * 1e3, "ITL p50 / per_token p50"),
        ("output tokens/s, as stored", h["output_tokens_per_s"], o["decode"]["throughput"]["value"],
         "B*K / window (prefill in) / B*(K-1) / decode mean"),
        ("decode tokens/s, comparable", b / (tpot / 1e3), b * (k - 1) / (dec_p50 / 1e3),
         "B / TPOT / B*(K-1) / decode p50"),
        ("generate tokens/s", h["output_tokens_per_s"], b * k / o["generate"]["p50_s"],
         "B*K / window / B*K / generate p50"),
        ("e2e ms per request", h["e2e_p50_ms"], o["generate"]["p50_s"] * 1e3, "e2e p50 / generate p50"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,4", help="comma-separated B (Heptathlon --concurrency B)")
    ap.add_argument("--input-len", type=int, default=32, help="L: prompt tokens")
    ap.add_argument("--new-tokens", type=int, default=16, help="K: generated tokens (>= 2)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per B, the tools' order alternating")
    ap.add_argument("--requests", type=int, default=None, help="Heptathlon requests per run (default max(32, 16*B))")
    ap.add_argument("--warmup", type=int, default=4, help="Heptathlon warm-up requests (single stream)")
    ap.add_argument("--iterations", type=int, default=30, help="optimum-benchmark measured generate() calls")
    ap.add_argument("--peer-warmup", type=int, default=5, help="optimum-benchmark warmup_runs")
    ap.add_argument("--peer-python", default=os.environ.get("HEPTATHLON_PEER_PYTHON"),
                    help="python of the optimum-benchmark venv (default $HEPTATHLON_PEER_PYTHON)")
    ap.add_argument("--model", type=Path, default=None, help="reuse this save_pretrained folder instead of building")
    ap.add_argument("--cpu", type=int, default=0, help="the one core every tool runs on: 0 is the cpu-1core "
                                                       "profile; another core runs a copy of it pinned there")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-loop diagnostic")
    ap.add_argument("--wait-quiet", action="store_true", help="pass --wait-quiet to Heptathlon (60 s at most)")
    ap.add_argument("--json", type=Path, default=None, help="also write every raw number here")
    args = ap.parse_args()
    bs = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    L, K = args.input_len, args.new_tokens
    if K < 2 or L < 1 or not bs or min(bs) < 1:
        fail("need --new-tokens >= 2, --input-len >= 1 and batch sizes >= 1")
    peer = check_peer(args.peer_python)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="generate_peer_"))
    try:
        model = args.model.resolve() if args.model else build_model(work / "model")
        folder = write_submission(model, work / "submission", L)
        model = folder / "model"  # both tools read the same saved folder
        profile = profile_for(args.cpu, work)
        raw: dict = {"B": {}, "L": L, "K": K, "cpu": args.cpu}
        loads: list[float] = []
        for b in bs:
            n = args.requests or max(32, 16 * b)
            hs, os_, bare = [], [], {}
            for r in range(args.rounds):
                order = ["heptathlon", "optimum"] if (r + bs.index(b)) % 2 == 0 else ["optimum", "heptathlon"]
                for tool in order:
                    if tool == "heptathlon":
                        hs.append(run_heptathlon(folder, b, K, n, args.warmup, work / f"h-{b}-{r}.db",
                                                 args.wait_quiet, profile))
                    else:
                        os_.append(run_optimum(peer, model, b, L, K, args.iterations, args.peer_warmup, args.cpu))
                    loads.append(os.getloadavg()[0])
                if not args.no_bare:
                    for name, py in [("heptathlon venv", sys.executable), ("peer venv", peer)][::1 if r % 2 == 0 else -1]:
                        bare.setdefault(name, []).append(run_bare(py, model, b, L, K, 20, args.cpu))
                print(f"B={b} round {r + 1}/{args.rounds} done ({' then '.join(order)}), "
                      f"{time.time() - started:.0f} s", file=sys.stderr)
            raw["B"][b] = {"heptathlon": hs, "optimum": os_, "bare": bare or None}
        raw["load"] = [min(loads), max(loads)]
        raw["versions"] = {"heptathlon transformers": raw["B"][bs[0]]["heptathlon"][0]["_transformers"],
                           **{f"peer {k}": v for k, v in raw["B"][bs[0]]["optimum"][0]["versions"].items()}}
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=str))
        print_table(raw, bs, L, K, time.time() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(raw: dict, bs: list[int], L: int, K: int, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Heptathlon generate vs optimum-benchmark 0.6.0: L={L}, K={K}, median of "
                    f"{len(raw['B'][bs[0]]['heptathlon'])} rounds [range]")
    for c, j in (("B", "right"), ("quantity", "left"), ("Heptathlon", "right"), ("optimum-benchmark", "right"),
                 ("ratio H/O", "right"), ("pairing", "left")):
        t.add_column(c, justify=j)
    for b in bs:
        d = raw["B"][b]
        per_round = [rows_for(b, L, K, h, o) for h, o in zip(d["heptathlon"], d["optimum"])]
        for i, (q, _, _, note) in enumerate(per_round[0]):
            hv = [r[i][1] for r in per_round]
            ov = [r[i][2] for r in per_round]
            ratio = [x / y for x, y in zip(hv, ov)]
            t.add_row(str(b), q, fmt(hv), fmt(ov), f"{float(np.median(ratio)):.2f}", note)
        share = [h.get("contention_share") for h in d["heptathlon"] if h.get("contention_share") is not None]
        oshare = [o["contention_share"] for o in d["optimum"] if "contention_share" in o]
        if share or oshare:
            t.add_row(str(b), "contention share", fmt(share) if share else "", fmt(oshare) if oshare else "", "",
                      "other processes' CPU time on the core; > ~0.1 inflates times")
        if d["bare"]:
            hb, pb = d["bare"]["heptathlon venv"], d["bare"]["peer venv"]
            what = f"engine's calls, no harness, each venv: transformers {hb[0]['transformers']} / " \
                   f"{pb[0]['transformers']}"
            for q, key in (("bare loop prefill ms", "prefill_ms"), ("bare loop decode ms per token", "step_ms")):
                hv, pv = [x[key] for x in hb], [x[key] for x in pb]
                t.add_row(str(b), q, fmt(hv), fmt(pv), f"{float(np.median(np.divide(hv, pv))):.2f}", what)
        t.add_section()
    Console(width=160).print(t)
    v = raw["versions"]
    print("versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + f"; load average "
          f"{raw['load'][0]:.1f}-{raw['load'][1]:.1f} on {os.cpu_count()} CPUs; {elapsed:.0f} s in all")


if __name__ == "__main__":
    main()
