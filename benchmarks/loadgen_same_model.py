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
    """LoadGen SingleStream p50 (us) over the same calls: the one driver, in harness_overhead.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness_overhead import loadgen_single_stream

    return loadgen_single_stream(call, feeds, n, outdir)["p50_us"]


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
