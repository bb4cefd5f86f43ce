"""Per-query harness overhead, and how well the harness recovers a known cost.

    python benchmarks/harness_overhead.py [--queries 20000] [--rounds 5] [--cpu N] [--costs 1000] [--json FILE]
    python benchmarks/harness_overhead.py --quick    # part 1 only, fewer queries and rounds (about 10 s)

Part 1, on a null model (a Python function that returns at once), in one process:
- heptathlon in-process: ``heptathlon.runners.loadgen.run_closed_loop`` calling the null model;
- MLPerf LoadGen SingleStream (pip ``mlcommons-loadgen``) calling the same null model from its
  Python SUT callback and completing each sample with ``QuerySamplesComplete``;
- heptathlon stdio: the ``command`` adapter talking to ``heptathlon.runners.stdio.serve`` in a child
  process, whose model is the busy-wait one at cost 0;
- naive stdio: a plain JSON-lines loop on both sides (json.dumps/loads, buffered write + flush,
  readline), the baseline the stdio path is optimised against;
- heptathlon isolated: the path every torch/torchscript submission takes by default, the
  ``ProxyAdapter`` talking over its binary channel to ``heptathlon.runners.model_host`` in the
  real sandbox (bwrap where it works), whose model is the null model (``NullAdapter``). Its p50
  is the per-round-trip overhead of isolation (goal: at most 15 us on this project's machine).
For each: the recorded per-query latency (the floor every measurement carries) and the loop's
wall time per query (what the harness costs between queries too). The paths run in turn,
``--rounds`` times, so a burst of load from other processes hits all of them; the table gives
the median over rounds and the range.

Part 2, calibrated workloads: the busy-wait models of ``submissions/calibrated-busywait`` (torch,
in-process) and ``submissions/calibrated-busywait-command`` (stdio), plus the same busy-wait as a
Python function under LoadGen. Each path is run at cost 0 (its overhead) and at each cost c;
the recovered cost is p50(c) - p50(0), and the error is recovered / c - 1 (target: within 1%).

Part 3, the server loop's timing: how late ``time.sleep`` wakes on this machine (default timer
slack, and 1 ns via prctl), and the issue drift of the open loop at 1000 QPS on the null model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heptathlon.bench.manifest import load_manifest  # noqa: E402
from heptathlon.bench.profile import load_profile  # noqa: E402
from heptathlon.bench.scenarios import StopRule  # noqa: E402
from heptathlon.runners.adapters import make_adapter  # noqa: E402
from heptathlon.runners.loadgen import (measure_sleep_overshoot, run_closed_loop, run_server, set_timer_slack,  # noqa: E402
                             spin_margin_ns)

TARGET_STDIO_P50_US = 30.0
TARGET_ISOLATED_P50_US = 15.0
TARGET_ERROR = 0.01


def null_model(x):
    return None


def busy_wait_model(cost_ns: int):
    pc = time.perf_counter_ns

    def predict(x):
        end = pc() + cost_ns
        while pc() < end:
            pass
    return predict


def stop_after(n: int) -> StopRule:
    return StopRule(min_queries=n, min_duration_s=0.0, max_duration_s=600.0)


def summarize(lat_ns: np.ndarray, wall_ns: int) -> dict:
    us = lat_ns / 1e3
    return {"n": int(us.size), "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "loop_us": wall_ns / 1e3 / us.size}


# ---- the paths ---------------------------------------------------------------------------------------------
def heptathlon_loop(predict, prepared, n: int) -> dict:
    for p in prepared[:50]:  # warm-up
        predict(p)
    t = time.perf_counter_ns()
    r = run_closed_loop(predict, prepared, [1] * len(prepared), stop_after(n))
    return summarize(r.done_ns - r.issue_ns, time.perf_counter_ns() - t)


def loadgen_single_stream(predict, data: list, n: int, outdir: Path) -> dict:
    import mlperf_loadgen as lg

    def issue(query_samples):
        for q in query_samples:
            predict(data[q.index])
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in query_samples])

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.single_stream_expected_latency_ns = 1000
    settings.min_query_count = settings.max_query_count = n
    settings.min_duration_ms = 0
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(data), len(data), lambda s: None, lambda s: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    res = {}
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG"):
            d = json.loads(line[len(":::MLLOG"):])
            res[d["key"]] = d["value"]
    return {"n": n, "p50_us": res["result_50.00_percentile_latency_ns"] / 1e3,
            "p99_us": res["result_99.00_percentile_latency_ns"] / 1e3, "mean_us": res["result_mean_latency_ns"] / 1e3,
            "loop_us": 1e6 / res["result_qps_with_loadgen_overhead"]}


NAIVE_CHILD = r"""
import json, sys
import numpy as np
out = sys.stdout.buffer
out.write(b'{"ready": true}\n'); out.flush()
for line in sys.stdin.buffer:
    req = json.loads(line)
    x = np.asarray(req["inputs"], dtype=np.float32)
    out.write(json.dumps({"id": req["id"], "outputs": np.zeros(len(x), dtype=np.int64).tolist()}).encode() + b"\n")
    out.flush()
"""


class NaiveStdio:
    """A plain JSON-lines client: the baseline, not used by the harness."""

    def __init__(self, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", NAIVE_CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}
        self.i = 0

    def prepare(self, batch):
        return json.dumps(batch.tolist()).encode(), len(batch)

    def predict(self, prepared):
        payload, n = prepared
        self.i += 1
        self.proc.stdin.write(b'{"id": %d, "inputs": %s}\n' % (self.i, payload))
        self.proc.stdin.flush()
        msg = json.loads(self.proc.stdout.readline())
        if msg["id"] != self.i or len(msg["outputs"]) != n:
            raise RuntimeError("bad answer")
        return msg

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def calibrated_copy(tmp: Path, kind: str, cost_us: float) -> Path:
    name = "calibrated-busywait" + ("-command" if kind == "command" else "")
    d = tmp / f"{name}-{cost_us:g}"
    if not d.exists():
        shutil.copytree(REPO / "submissions" / name, d, ignore=shutil.ignore_patterns("__pycache__", "weights.pt"))
        subprocess.run([sys.executable, "build.py", "--cost-us", str(cost_us)], cwd=d, check=True, capture_output=True)
    return d


def adapter_for(folder: Path, env: dict):
    a = make_adapter(load_manifest(folder), folder, load_profile("cpu-1core"), {"command_env": env})
    a.load()
    return a


# ---- report ----------------------------------------------------------------------------------------------
def isolated_null_adapter(tmp: Path):
    """A loaded ProxyAdapter whose model process (sandboxed, as for a torch submission) runs the null model."""
    from heptathlon.runners.adapters.proxy import ProxyAdapter

    folder = calibrated_copy(tmp, "command", 0)
    a = ProxyAdapter(load_manifest(folder), folder, None, {"host_adapter": "heptathlon.runners.model_host:NullAdapter"})
    a.load()
    return a


def combine(rounds: list[dict]) -> dict:
    out = {}
    for k in rounds[0]:
        vals = [r[k] for r in rounds]
        out[k] = float(np.median(vals))
        out[k + "_range"] = (float(min(vals)), float(max(vals)))
    return out


def fmt_range(d: dict, key: str) -> str:
    lo, hi = d[key + "_range"]
    return f"{d[key]:8.2f} [{lo:.2f}-{hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=20000, help="queries per null-model run")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--costs", default="1000,2000", help="busy-wait costs in microseconds, comma-separated")
    ap.add_argument("--calibrated-queries", type=int, default=2000)
    ap.add_argument("--cpu", type=int, default=None, help="pin this process (and its children) to one CPU")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="part 1 only: 4000 queries, 3 rounds")
    args = ap.parse_args()
    if args.quick:
        args.queries, args.rounds = min(args.queries, 4000), min(args.rounds, 3)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    tmp = Path(tempfile.mkdtemp(prefix="heptathlon-overhead-"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "PYTHONPATH": str(REPO)}
    x = np.random.default_rng(0).normal(size=(256, 7)).astype(np.float32)  # arrests-shaped rows
    rows = [x[i:i + 1] for i in range(len(x))]
    conditions = {"python": platform.python_version(), "cpus": os.cpu_count(),
                  "affinity": sorted(os.sched_getaffinity(0)), "loadavg_start": os.getloadavg(),
                  "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"conditions: {conditions}", flush=True)

    # Part 1 ------------------------------------------------------------------------------------------
    cmd = adapter_for(calibrated_copy(tmp, "command", 0), env)
    cmd_prepared = [cmd.prepare(r) for r in rows]
    naive = NaiveStdio(env)
    naive_prepared = [naive.prepare(r) for r in rows]
    iso = isolated_null_adapter(tmp)
    iso_prepared = [iso.prepare(r) for r in rows]
    runs = {"inproc": lambda: heptathlon_loop(null_model, rows, args.queries),
            "loadgen": lambda: loadgen_single_stream(null_model, rows, args.queries, Path(tempfile.mkdtemp(dir=tmp))),
            "isolated": lambda: heptathlon_loop(iso.predict, iso_prepared, args.queries // 4),
            "stdio": lambda: heptathlon_loop(cmd.predict, cmd_prepared, args.queries // 8),
            "naive": lambda: heptathlon_loop(naive.predict, naive_prepared, args.queries // 8)}
    results: dict[str, list[dict]] = {k: [] for k in runs}
    order = list(runs)
    for k in range(args.rounds):
        r = k % len(order)
        for name in order[r:] + order[:r]:  # rotate, so no path always follows the same one
            results[name].append(runs[name]())
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    cmd.close()
    naive.close()
    iso_sandbox = (iso.sandbox or {}).get("mechanism") or "none"
    iso.close()
    table = {k: combine(v) for k, v in results.items()}
    names = {"inproc": "heptathlon in-process", "loadgen": "MLPerf LoadGen SingleStream",
             "isolated": f"heptathlon isolated (model_host, {iso_sandbox})",
             "stdio": "heptathlon stdio (adapter+helper)", "naive": "naive JSON-lines stdio"}
    lg = table["loadgen"]
    print("\nnull model: per-query harness overhead, median over rounds [min-max]")
    print(f"{'path':36s} {'latency p50 us':>22s} {'latency p99 us':>22s} {'loop us/query':>22s} "
          f"{'p50 / LoadGen':>14s} {'loop / LoadGen':>15s}")
    for k, name in names.items():
        d = table[k]
        print(f"{name:36s} {fmt_range(d, 'p50_us'):>22s} {fmt_range(d, 'p99_us'):>22s} {fmt_range(d, 'loop_us'):>22s} "
              f"{d['p50_us'] / lg['p50_us']:14.2f} {d['loop_us'] / lg['loop_us']:15.2f}")
    print(f"\nstdio p50 {table['stdio']['p50_us']:.1f} us (target <= {TARGET_STDIO_P50_US:g}); naive loop "
          f"{table['naive']['p50_us']:.1f} us; in-process vs LoadGen p50 "
          f"{table['inproc']['p50_us']:.2f} vs {lg['p50_us']:.2f} us")
    iso_t = table["isolated"]
    print(f"isolated (model process) p50 {iso_t['p50_us']:.1f} us per round trip (goal <= {TARGET_ISOLATED_P50_US:g}); "
          f"{iso_t['p50_us'] / table['inproc']['p50_us']:.1f}x in-process, {iso_t['p50_us'] / lg['p50_us']:.1f}x LoadGen, "
          f"{iso_t['p50_us'] / table['stdio']['p50_us']:.2f}x stdio; load average now {os.getloadavg()[0]:.2f} "
          "(other processes on the machine inflate every path)")
    if args.quick:
        conditions["loadavg_end"] = os.getloadavg()
        if args.json:
            args.json.write_text(json.dumps({"conditions": conditions, "null": table}, indent=2, default=str))
        shutil.rmtree(tmp, ignore_errors=True)
        return

    # Part 2 ------------------------------------------------------------------------------------------
    costs = [float(c) for c in args.costs.split(",")]
    nq = args.calibrated_queries
    calib: dict[str, dict] = {}
    paths = {"heptathlon + python busy-wait": "python", "heptathlon torch adapter": "torch",
             "heptathlon stdio command": "command", "LoadGen + python busy-wait": "loadgen"}
    for label, kind in paths.items():
        per_cost = {}
        for c in [0.0] + costs:
            n = max(200, int(nq * min(1.0, 1000.0 / c))) if c else nq  # about the same time per cost
            p50s = []
            for _ in range(max(1, args.rounds // 2)):
                if kind == "loadgen":
                    p50s.append(loadgen_single_stream(busy_wait_model(int(c * 1000)), rows, n,
                                                      Path(tempfile.mkdtemp(dir=tmp)))["p50_us"])
                elif kind == "python":
                    p50s.append(heptathlon_loop(busy_wait_model(int(c * 1000)), rows, n)["p50_us"])
                else:
                    a = adapter_for(calibrated_copy(tmp, kind, c), env)
                    p50s.append(heptathlon_loop(a.predict, [a.prepare(r) for r in rows], n)["p50_us"])
                    a.close()
            per_cost[c] = float(np.median(p50s))
        calib[label] = per_cost
        print(f"calibrated: {label} done", file=sys.stderr, flush=True)
    print("\ncalibrated busy-wait: recovered = p50(c) - p50(0); error = recovered / c - 1 (target within 1%)")
    print(f"{'path':32s} {'p50(0) us':>10s} " + " ".join(f"{f'p50({c:g}) us':>14s} {'error':>7s}" for c in costs)
          + (f" {'slope error':>12s}" if len(costs) > 1 else ""))
    errors = {}
    for label, per_cost in calib.items():
        cells = []
        for c in costs:
            err = (per_cost[c] - per_cost[0.0]) / c - 1
            errors[f"{label} @ {c:g}us"] = err
            cells.append(f"{per_cost[c]:14.2f} {err * 100:6.2f}%")
        line = f"{label:32s} {per_cost[0.0]:10.2f} " + " ".join(cells)
        if len(costs) > 1:  # the scale of the clock alone: offsets that do not grow with the cost cancel
            lo, hi = min(costs), max(costs)
            slope = (per_cost[hi] - per_cost[lo]) / (hi - lo) - 1
            errors[f"{label} slope {lo:g}-{hi:g}us"] = slope
            line += f" {slope * 100:11.2f}%"
        print(line)

    # Part 3 ------------------------------------------------------------------------------------------
    default_over = measure_sleep_overshoot(n=200)
    slack = set_timer_slack(1)
    tight_over = measure_sleep_overshoot(n=200)
    spin = spin_margin_ns(tight_over)
    arrivals = np.cumsum(np.random.default_rng(0).exponential(1e6, 3000)).astype(np.int64)  # 1000 QPS
    r = run_server(null_model, {1: rows}, arrivals, n_queries=3000, stop=StopRule(1, 0.0, 60.0), spin_ns=spin)
    print("\nserver loop timing")
    for name, o in (("sleep(200us) overshoot, default slack", default_over),
                    (f"sleep(200us) overshoot, slack 1 ns ({'set' if slack else 'not set'})", tight_over)):
        print(f"  {name:48s} p50 {np.percentile(o, 50) / 1e3:7.1f} us  p99 {np.percentile(o, 99) / 1e3:8.1f} us")
    d = r.summary["issue_drift"]
    print(f"  spin margin {spin / 1e3:.0f} us; server issue drift at 1000 QPS on the null model: "
          f"p50 {d['p50_us']:.2f} us, p99 {d['p99_us']:.2f} us, max {d['max_us']:.0f} us (n={d['n']})")
    conditions["loadavg_end"] = os.getloadavg()
    print(f"\nload average at the end: {conditions['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps({"conditions": conditions, "null": table, "calibrated": calib,
                                         "errors": errors,
                                         "sleep_overshoot_us": {"default": _pct(default_over), "slack_1ns": _pct(tight_over)},
                                         "server_drift_us": d}, indent=2, default=str))
    shutil.rmtree(tmp, ignore_errors=True)


def _pct(o: np.ndarray) -> dict:
    return {"p50": float(np.percentile(o, 50) / 1e3), "p99": float(np.percentile(o, 99) / 1e3)}


if __name__ == "__main__":
    main()
