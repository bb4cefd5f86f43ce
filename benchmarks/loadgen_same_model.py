"""The same ONNX file through Heptathlon and through MLPerf LoadGen, each against a bare loop
(issue 14, item 8). What a user compares is p50 latency of one model, not of a null function.

Paths, all in this process, on the same onnxruntime session settings (one intra-op thread, the
cpu-1core profile's ORT options), on the same rows:

- **bare sess.run**: ``t0 = perf_counter_ns(); sess.run(None, feeds); t1`` in a Python loop, feeds
  built beforehand: the floor any harness adds to;
- **heptathlon loop, bare call**: ``runners.loadgen.run_closed_loop`` around the same bare call:
  the harness's loop and timing only;
- **heptathlon adapter**: the real ONNX adapter (``runners.adapters``, ``prepare`` outside the
  timed call, ``predict`` inside) in ``run_closed_loop``: what a Heptathlon run of this file times;
- **LoadGen SingleStream**: a Python SUT whose ``issue_query`` runs the same bare call and
  completes the sample with ``QuerySamplesComplete``: LoadGen's latency includes the C++ ->
  Python callback and the completion round trip back to C++.

Rounds run in a rotating order so load from other processes hits every path alike; the table is
the median over rounds (range in brackets). ``--cpu N`` pins the process to one CPU.

    python benchmarks/loadgen_same_model.py --cpu 0 --queries 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
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
from heptathlon.bench.tasks import resolve_task  # noqa: E402
from heptathlon.runners.adapters import make_adapter  # noqa: E402
from heptathlon.runners.loadgen import run_closed_loop  # noqa: E402


def p50_us(lat_ns) -> float:
    return float(np.percentile(np.asarray(lat_ns) / 1e3, 50))


def bare(call, feeds: list, n: int) -> float:
    pc = time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        f = feeds[i % len(feeds)]
        t0 = pc()
        call(f)
        out[i] = pc() - t0
    return p50_us(out)


def heptathlon(predict, prepared: list, n: int) -> float:
    r = run_closed_loop(predict, prepared, [1] * len(prepared), StopRule(min_queries=n, min_duration_s=0.0,
                                                                         max_duration_s=600.0))
    return p50_us(r.done_ns - r.issue_ns)


def loadgen(call, feeds: list, n: int, outdir: Path) -> float:
    import mlperf_loadgen as lg

    def issue(query_samples):
        for q in query_samples:
            call(feeds[q.index])
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in query_samples])

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.single_stream_expected_latency_ns = 20000
    settings.min_query_count = settings.max_query_count = n
    settings.min_duration_ms = 0
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(feeds), len(feeds), lambda s: None, lambda s: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG"):
            d = json.loads(line[len(":::MLLOG"):])
            if d["key"] == "result_50.00_percentile_latency_ns":
                return d["value"] / 1e3
    raise RuntimeError("LoadGen wrote no p50")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submission", type=Path, default=REPO / "submissions" / "arrests-mlp-onnx")
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        sys.exit("mlperf_loadgen is not installed: pip install mlcommons-loadgen")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    folder = args.submission
    manifest = load_manifest(folder)
    adapter = make_adapter(manifest, folder, load_profile("cpu-1core"), {})
    adapter.load()
    x = resolve_task(manifest.task, folder).load().x_test
    rows = [x[i:i + 1] for i in range(min(len(x), 512))]
    prepared = [adapter.prepare(r) for r in rows]
    sess = adapter.session
    name = sess.get_inputs()[0].name
    feeds = [{name: r.astype(np.float32)} for r in rows]

    def call(f):
        return sess.run(None, f)

    for f in feeds[:200]:  # warm-up
        call(f)
    paths = {"bare sess.run": lambda: bare(call, feeds, args.queries),
             "heptathlon loop, bare call": lambda: heptathlon(call, feeds, args.queries),
             "heptathlon adapter": lambda: heptathlon(adapter.predict, prepared, args.queries),
             "LoadGen SingleStream": lambda: loadgen(call, feeds, args.queries, Path(tempfile.mkdtemp()))}
    names = list(paths)
    got: dict[str, list[float]] = {k: [] for k in names}
    load = []
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            got[k].append(paths[k]())
        load.append(os.getloadavg()[0])
    med = {k: float(np.median(v)) for k, v in got.items()}
    b, lg_ = med["bare sess.run"], med["LoadGen SingleStream"]
    print(f"{folder.name}: {args.rounds} rounds x {args.queries} queries, cpu {args.cpu}, "
          f"load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs")
    print(f"{'path':<28} {'p50 us [range]':>22} {'- bare us':>10} {'/ bare':>8} {'/ LoadGen':>10}")
    for k in names:
        print(f"{k:<28} {med[k]:>9.2f} [{min(got[k]):.2f}-{max(got[k]):.2f}] {med[k] - b:>10.2f} "
              f"{med[k] / b:>8.3f} {med[k] / lg_:>10.3f}")


if __name__ == "__main__":
    main()
