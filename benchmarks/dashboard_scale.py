"""The web leaderboard at scale: 100,000 runs and 1,000,000 measurements in SQLite.

Fills a fresh SQLite database (bulk inserts through SQLAlchemy Core, one transaction per table),
then times, on this machine:

- the leaderboard query the dashboard's first page runs (heptathlon.db.dashboard_queries.latest_results for
  one task / scenario / profile / machine class), plus the filter and overview queries that page
  also needs, and the CLI's heptathlon.db.queries.leaderboard for comparison;
- the first render of the app (Streamlit AppTest ``run()``), in a fresh Python process so that
  nothing is cached or imported yet, then again with the query cache cleared and with it warm.

    .venv/bin/python benchmarks/dashboard_scale.py [--runs 100000] [--measurements 1000000] [--db PATH]

Targets on the 2-core development machine: query < 200 ms, first render < 2 s. Numbers go in
docs/performance.md ("Dashboard at scale"). Timings are wall-clock and machine-specific.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import streamlit.logger  # noqa: E402

# Outside `streamlit run` the cached wrappers warn "no runtime" when defined; this script calls the
# plain query functions, so the warning is noise here.
streamlit.logger.set_log_level("error")

import numpy as np  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from heptathlon.bench.series import run_series_key  # noqa: E402
from heptathlon.db import dashboard_queries as DQ  # noqa: E402
from heptathlon.db import queries as Q  # noqa: E402
from heptathlon.db.models import Machine, Measurement, Profile, Run, Submission, Task  # noqa: E402
from heptathlon.db.session import get_engine, session_scope, upgrade  # noqa: E402

TASKS = ["arrests", "hearts", "digits"]
PROFILES = ["cpu-1core", "cpu-2core", "cpu-halfcore", "cpu-1core-int8", "cpu-1core-bf16"]
SCENARIOS = ["single_stream", "offline"]
METRICS = [("latency_p50_ms", "ms", "timer:perf_counter_ns"), ("latency_p90_ms", "ms", "timer:perf_counter_ns"),
           ("latency_p99_ms", "ms", "timer:perf_counter_ns"), ("latency_mean_ms", "ms", "timer:perf_counter_ns"),
           ("throughput_sps", "samples/s", "timer:perf_counter_ns"), ("accuracy", "fraction", "quality:labels"),
           ("peak_rss_mb", "MB", "sampled:psutil-tree"), ("load_s", "s", "timer:wall-clock"),
           ("params", "count", "artifact:onnx-initializers"), ("energy_per_sample_j", "J", "estimate:codecarbon")]
SPECS = [{"cpu_model": "Bench CPU A", "logical_cores": 16, "physical_cores": 8, "ram_bytes": 64 * 2**30,
          "arch": "x86_64", "cpu_flags_sha256": "a", "gpus": []},
         {"cpu_model": "Bench CPU B", "logical_cores": 2, "physical_cores": 2, "ram_bytes": 8 * 2**30,
          "arch": "x86_64", "cpu_flags_sha256": "b", "gpus": []}]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def fill(url: str, n_runs: int, n_measurements: int, n_submissions: int, seed: int = 0) -> dict[str, int]:
    """Bulk-insert a realistic history: every series runs nightly, 2% of runs fail."""
    rng = np.random.default_rng(seed)
    upgrade(url)
    engine = get_engine(url)
    with engine.begin() as c:
        c.execute(insert(Machine), [{"id": i + 1, "fingerprint_hash": f"bench-{i}", "specs": s,
                                     "created_at": T0} for i, s in enumerate(SPECS)])
        c.execute(insert(Profile), [{"id": i + 1, "name": p, "spec_hash": f"h{i}", "yaml": f"name: {p}\n"}
                                    for i, p in enumerate(PROFILES)])
        c.execute(insert(Task), [{"name": t, "spec": {}} for t in TASKS])
        c.execute(insert(Submission), [{"id": i + 1, "name": f"model-{i:04d}", "version": "1",
                                        "task": TASKS[i % len(TASKS)], "kind": "onnx",
                                        "artifact_sha256": f"{i:064d}", "manifest": {"name": f"model-{i:04d}"},
                                        "store_path": "/none", "created_at": T0} for i in range(n_submissions)])
    series = [(sub, p, sc, m) for sub in range(n_submissions) for p in range(len(PROFILES))
              for sc in range(len(SCENARIOS)) for m in range(len(SPECS))]
    quality = rng.uniform(0.7, 0.98, n_submissions)
    speed = rng.lognormal(-1.0, 1.0, n_submissions)
    keys = {(sub, p, sc, m): run_series_key(  # written by heptathlon.db.series on ORM flushes; Core skips it
        submission=f"model-{sub:04d}", task=TASKS[sub % len(TASKS)], profile=PROFILES[p], scenario=SCENARIOS[sc],
        run_params={"name": SCENARIOS[sc], "batch_size": 1}, trials=1, fingerprint=SPECS[m]).id
        for sub, p, sc, m in series}
    runs, succeeded = [], []
    for i in range(n_runs):
        sub, p, sc, m = series[i % len(series)]
        night = i // len(series)
        t = T0 + timedelta(days=night, seconds=i % len(series))
        ok = rng.random() >= 0.02
        rid = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i))
        runs.append({"id": rid, "submission_id": sub + 1, "profile_id": p + 1, "machine_id": m + 1 if ok else None,
                     "submission_ref": f"submissions/model-{sub:04d}", "profile_name": PROFILES[p],
                     "task_name": TASKS[sub % len(TASKS)], "scenario": SCENARIOS[sc],
                     "params": {"name": SCENARIOS[sc], "batch_size": 1}, "status": "succeeded" if ok else "failed",
                     "error": None if ok else "worker timed out", "stderr_tail": None, "trial": 0, "group_id": None,
                     "created_at": t, "started_at": t, "finished_at": t + timedelta(seconds=30), "software": {},
                     "controls": {}, "extra": {}, "series_key": keys[sub, p, sc, m] if ok else None})
        if ok:
            succeeded.append((rid, sub, p))
    meas = []
    for rid, sub, p in succeeded:
        lat = speed[sub] * (1 + 0.3 * p) * float(rng.lognormal(0, 0.05))
        values = [lat, lat * 1.4, lat * 2.5, lat * 1.1, 1000 / lat, quality[sub], 80 + sub % 50, 0.3, 1000 + sub,
                  lat * 1e-4]
        for (name, unit, method), v in zip(METRICS, values):
            meas.append({"run_id": rid, "metric": name, "unit": unit, "value": float(v), "ci_low": float(v) * 0.97,
                         "ci_high": float(v) * 1.03, "n": 1000, "method": method, "note": None, "params": {}})
    # Top up with batch-sweep points (they are stored beside a run's headline values) to the target.
    k = 0
    while len(meas) < n_measurements:
        rid, sub, p = succeeded[k % len(succeeded)]
        b = 2 ** (k // len(succeeded) % 10)
        meas.append({"run_id": rid, "metric": "latency_p50_ms", "unit": "ms", "value": 0.1 * b, "ci_low": None,
                     "ci_high": None, "n": 50, "method": "timer:perf_counter_ns", "note": None,
                     "params": {"sweep": True, "batch_size": b, "runtime": "onnxruntime"}})
        k += 1
    meas = meas[:n_measurements]
    with engine.begin() as c:
        for i in range(0, len(runs), 20000):
            c.execute(insert(Run), runs[i:i + 20000])
        for i in range(0, len(meas), 50000):
            c.execute(insert(Measurement), meas[i:i + 50000])
    with engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
        c.commit()
    return {"runs": len(runs), "succeeded": len(succeeded), "measurements": len(meas), "series": len(series)}


def time_ms(fn, repeat: int = 7) -> tuple[float, float]:
    """(first call, median of the following calls) in ms."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out[0], statistics.median(out[1:])


RENDER = r"""
import json, os, sys, time
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest
import streamlit as st
t_import = time.perf_counter() - t0
app = sys.argv[1]
out = {"import_testing_s": t_import}
for name in ("first", "cache_cleared", "warm"):
    if name == "cache_cleared":
        st.cache_data.clear()
    at = AppTest.from_file(app, default_timeout=120)
    t = time.perf_counter()
    at.run()
    out[name + "_s"] = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    html = [h.value for h in at.get("html") if "hep-leaderboard" in h.value]
    out["rows"] = html[0].count("<tr") - 1 if html else 0
print(json.dumps(out))
"""


PEER = r"""
import json, time
t0 = time.perf_counter()
import pandas, plotly.graph_objects, sqlalchemy, streamlit  # noqa: F401,E401  what any Streamlit app imports
from streamlit.testing.v1 import AppTest
at = AppTest.from_string("import streamlit as st\nst.title('peer')\nst.dataframe({'a': [1, 2, 3]})")
at.run()
print(json.dumps({"peer_s": time.perf_counter() - t0}))
"""


def time_peer() -> float:
    """A fresh process that imports the same libraries and renders a trivial app: the floor any
    first render pays on this machine right now (the load of other work included)."""
    p = subprocess.run([sys.executable, "-c", PEER], capture_output=True, text=True, cwd=REPO, check=False)
    if p.returncode != 0:
        raise SystemExit(f"peer failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])["peer_s"]


def time_render(url: str) -> dict[str, float]:
    env = dict(os.environ, HEPTATHLON_DB=url)
    p = subprocess.run([sys.executable, "-c", RENDER, str(REPO / "dashboard" / "app.py")], env=env,
                       capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(f"render failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--measurements", type=int, default=1_000_000)
    ap.add_argument("--submissions", type=int, default=300)
    ap.add_argument("--db", type=Path, help="SQLite file to create (default: a temporary file)")
    ap.add_argument("--reuse", action="store_true", help="time an existing --db file again instead of filling one")
    ap.add_argument("--repeat", type=int, default=3, help="renders (each with its peer) to take the median of")
    args = ap.parse_args()
    path = args.db or Path(tempfile.mkdtemp(prefix="heptathlon-scale-")) / "scale.db"
    url = f"sqlite:///{path}"
    if path.exists() and not args.reuse:
        raise SystemExit(f"{path} exists; pass a new path (or --reuse to time an earlier fill again)")
    if not path.exists():
        t = time.perf_counter()
        counts = fill(url, args.runs, args.measurements, args.submissions)
        fill_s = time.perf_counter() - t
        print(f"filled {counts['runs']:,} runs ({counts['succeeded']:,} succeeded, {counts['series']:,} series), "
              f"{counts['measurements']:,} measurements in {fill_s:.1f} s; {path.stat().st_size / 1e6:.0f} MB at {path}")
    else:
        print(f"reusing {path} ({path.stat().st_size / 1e6:.0f} MB)")

    with session_scope(url) as s:
        classes = DQ.machine_classes(s)
    ids = tuple(int(x) for x in classes[classes["label"].str.startswith("Bench CPU A")]["machine_id"])
    group = {"task": "arrests", "profile": "cpu-1core", "scenario": "single_stream", "machine_ids": ids}

    def q(fn, **kw):
        def go():
            with session_scope(url) as s:
                return fn(s, **kw)
        return go

    with session_scope(url) as s:
        runs, meas = DQ.latest_results(s, **group)
    rows = [("leaderboard query: latest_results(one group)", q(DQ.latest_results, **group)),
            ("filter options: result_options", q(DQ.result_options)),
            ("overview: database_overview", q(DQ.database_overview)),
            ("board status: latest_attempts(one group)", q(DQ.latest_attempts, task="arrests", profile="cpu-1core",
                                                          scenario="single_stream", machine_ids=ids)),
            ("landing check: latest_nightly_time", q(DQ.latest_nightly_time)),
            ("CLI leaderboard: heptathlon.db.queries.leaderboard(task, profile, scenario)",
             q(Q.leaderboard, task="arrests", profile="cpu-1core", scenario="single_stream"))]
    print(f"\nleaderboard group: {len(runs)} entries, {len(meas)} headline values")
    print(f"{'query':66s} {'first ms':>9s} {'median ms':>10s}")
    for name, fn in rows:
        first, med = time_ms(fn)
        print(f"{name:66s} {first:9.1f} {med:10.1f}")

    # Render and peer alternate, three times each, so that both see the same load.
    renders, peers = [], []
    for _ in range(args.repeat):
        peers.append(time_peer())
        renders.append(time_render(url))
    med = {k: statistics.median(r[k] for r in renders) for k in ("import_testing_s", "first_s", "cache_cleared_s",
                                                                 "warm_s")}
    peer = statistics.median(peers)
    print(f"\nfirst page render (AppTest.run, fresh process, median of {args.repeat}; importing streamlit.testing "
          f"took {med['import_testing_s']:.2f} s before it):")
    print(f"  first run (cold: module imports, schema check, queries): {med['first_s']:.2f} s"
          f"  = {(med['import_testing_s'] + med['first_s']) / peer:.2f} x peer (import + first run)")
    print(f"  rerun with the query cache cleared:                      {med['cache_cleared_s']:.2f} s")
    print(f"  rerun with the query cache warm:                         {med['warm_s']:.2f} s")
    print(f"  peer: a fresh process importing the same libraries and rendering a trivial app: {peer:.2f} s")
    print(f"  leaderboard rows rendered: {renders[-1]['rows']}")
    print("  every try (first, cleared, warm / peer): "
          + "; ".join(f"{r['first_s']:.2f}, {r['cache_cleared_s']:.2f}, {r['warm_s']:.2f} / {p:.2f}"
                      for r, p in zip(renders, peers)))


if __name__ == "__main__":
    main()
