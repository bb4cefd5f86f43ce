"""Do the published 95% intervals cover the run-to-run spread? (issue 14, item 1)

Runs one submission (default: the calibrated 1 ms torch busy-wait, submissions/calibrated-busywait)
--runs times as separate single-stream runs, each in a fresh worker, and for p50, p99 and
throughput prints:

- the between-run SD (relative to the mean of the runs);
- **sampling CI**: how many runs' own 95% CI contain the median of all runs, and the mean
  half-width over the between-run SD (what main published before this change);
- **noise-model CI**: the same for the CI widened by a between-run noise model
  (heptathlon.bench.noise). The model used for run i is fitted on the *other* runs (leave one
  out), so no run's interval is fitted on itself;
- with --trials k (k >= 2): consecutive groups of k runs pooled as ``--trials k`` pools them
  (bench/stats.py), plain (t(k-1) interval) and with the model's degrees of freedom borrowed
  (leave-one-group-out).

Also the contention measured during the runs (contention_share, bench/contention.py) and the load
average, so a number measured on a busy machine says so.

    python benchmarks/ci_coverage.py --runs 20                       # the experiment of issue 14
    python benchmarks/ci_coverage.py --runs 21 --trials 3
    python benchmarks/ci_coverage.py --runs 20 --write-model         # keep the fitted model for this machine class

Success (issue 14): at least 90% coverage for p50, p99 and throughput with half-widths at most
3x the between-run SD.
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
METRICS = ("latency_p50_ms", "latency_p99_ms", "throughput_sps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submission", type=Path, default=REPO / "submissions" / "calibrated-busywait")
    ap.add_argument("--profile", default="cpu-1core")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--trials", type=int, default=1, help="also pool consecutive groups of this many runs")
    ap.add_argument("--min-queries", type=int, default=1000)
    ap.add_argument("--min-duration", type=float, default=2.0)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--write-model", action="store_true",
                    help="save the model fitted on all runs for this machine class ($HEPTATHLON_HOME/noise/)")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3 (a leave-one-out model needs two other runs)")

    keep_home = os.environ.get("HEPTATHLON_HOME")
    work = Path(tempfile.mkdtemp(prefix="heptathlon-ci-coverage-"))
    os.environ["HEPTATHLON_HOME"] = str(work / "home")  # no noise model applied while measuring
    os.environ.setdefault("HEPTATHLON_CONTENTION_MAX", "1")  # measure, do not mark: this script judges
    db = f"sqlite:///{work / 'results.db'}"

    from heptathlon.bench.app.demo import build_examples
    from heptathlon.bench.app.service import execute_run, queue_runs
    from heptathlon.bench.metrics import SampleKind
    from heptathlon.bench.noise import fit_noise_model, widen_pooled, widen_single
    from heptathlon.bench.scenarios import make_scenario
    from heptathlon.bench.stats import pool_latency_trials, pool_trial_values
    from heptathlon.db import queries as Q
    from heptathlon.db.session import session_scope

    build_examples([args.submission])
    sc = make_scenario("single_stream", min_queries=args.min_queries, min_duration_s=args.min_duration,
                       max_duration_s=max(60.0, 4 * args.min_duration), warmup_queries=args.warmup)
    runs, lat, fp = [], [], None
    t0 = time.perf_counter()
    for i in range(args.runs):
        [rid] = queue_runs(args.submission, [args.profile], [sc], db=db, energy={"enabled": False})
        o = execute_run(rid, db=db)
        if o.status != "succeeded":
            sys.exit(f"run {i + 1} failed: {o.error}")
        runs.append(o.metrics)
        with session_scope(db) as s:
            lat.append(Q.load_samples(s, rid, SampleKind.LATENCY_NS))
            fp = fp or Q.get_run(s, rid).machine.specs
        c = o.metrics.get("contention_share")
        print(f"run {i + 1:2d}/{args.runs}: p50 {o.metrics['latency_p50_ms'].value:.4f} ms, "
              f"p99 {o.metrics['latency_p99_ms'].value:.4f} ms, {o.metrics['throughput_sps'].value:.1f} samples/s, "
              f"contention {c.value if c and c.value is not None else float('nan'):.1%} "
              f"(load {(c.params or {}).get('loadavg_1m', '?') if c else '?'})", flush=True)
    elapsed = time.perf_counter() - t0

    cont = [m["contention_share"].value for m in runs if m.get("contention_share") and
            m["contention_share"].value is not None]
    loads = [m["contention_share"].params.get("loadavg_1m") for m in runs if m.get("contention_share")]
    print(f"\n{args.runs} runs of {args.submission.name} on {args.profile} in {elapsed:.0f} s; "
          f"contention_share mean {np.mean(cont):.1%} (min {np.min(cont):.1%}, max {np.max(cont):.1%}); "
          f"load average {np.nanmean([x for x in loads if x is not None]):.2f} on {os.cpu_count()} CPUs")
    print(f"\n{'metric':<16} {'between-run SD':>14}  {'sampling CI: covered, half/SD':>32}  "
          f"{'noise-model CI (LOO): covered, half/SD':>40}")
    for name in METRICS:
        vals = np.array([m[name].value for m in runs])
        truth, sd = float(np.median(vals)), float(np.std(vals, ddof=1))
        cov = half = cov_w = half_w = 0.0
        for i, m in enumerate(runs):
            v = m[name]
            cov += v.ci_low <= truth <= v.ci_high
            half += (v.ci_high - v.ci_low) / 2
            others = [r[name].value for j, r in enumerate(runs) if j != i]
            w = widen_single(v, fit_noise_model("loo", [{name: others}]))
            cov_w += w.ci_low <= truth <= w.ci_high
            half_w += (w.ci_high - w.ci_low) / 2
        n = len(runs)
        print(f"{name:<16} {sd / vals.mean():>13.2%}   {int(cov):>3d}/{n} ({cov / n:4.0%}), {half / n / sd:5.2f}x"
              f"{'':>12} {int(cov_w):>3d}/{n} ({cov_w / n:4.0%}), {half_w / n / sd:5.2f}x")

    if args.trials >= 2:
        k = args.trials
        groups = [list(range(g, g + k)) for g in range(0, args.runs - k + 1, k)]
        print(f"\n--trials {k}: {len(groups)} pooled groups (consecutive runs)")
        print(f"{'metric':<16} {'plain t(k-1): covered, half/SD':>34}  "
              f"{'model df borrowed (LOGO): covered, half/SD':>44}")
        for name in METRICS:
            vals = np.array([m[name].value for m in runs])
            truth, sd = float(np.median(vals)), float(np.std(vals, ddof=1))
            cov = half = cov_w = half_w = 0.0
            for g in groups:
                if name == "throughput_sps":
                    ms = [runs[i][name] for i in g]
                    total = sum(m.params["samples"] for m in ms) / sum(m.params["window_s"] for m in ms)
                    p = pool_trial_values(name, [m.value for m in ms], ms[0].method, value=total,
                                          ci=(float(np.mean([m.ci_low for m in ms])),
                                              float(np.mean([m.ci_high for m in ms]))))
                else:
                    p = next(x for x in pool_latency_trials([lat[i] for i in g]) if x.name == name)
                others = [runs[i][name].value for i in range(args.runs) if i not in g]
                w = widen_pooled(p, fit_noise_model("logo", [{name: others}]))
                cov += p.ci_low <= truth <= p.ci_high
                half += (p.ci_high - p.ci_low) / 2
                cov_w += w.ci_low <= truth <= w.ci_high
                half_w += (w.ci_high - w.ci_low) / 2
            n = len(groups)
            print(f"{name:<16} {int(cov):>12d}/{n} ({cov / n:4.0%}), {half / n / sd:5.2f}x"
                  f"{'':>16} {int(cov_w):>3d}/{n} ({cov_w / n:4.0%}), {half_w / n / sd:5.2f}x")

    if args.write_model:
        from heptathlon.bench.app.noise import machine_class_of, save_noise_model

        if keep_home:
            os.environ["HEPTATHLON_HOME"] = keep_home
        else:
            os.environ.pop("HEPTATHLON_HOME")
        model = fit_noise_model(machine_class_of(fp), [{name: [m[name].value for m in runs]
                                                         for name in ("latency_p50_ms", "latency_p90_ms",
                                                                      "latency_p99_ms", "latency_mean_ms",
                                                                      "throughput_sps")}],
                                note=f"{args.runs} runs of {args.submission.name} on {args.profile}; "
                                     f"contention mean {np.mean(cont):.1%}")
        print(f"\nnoise model written: {save_noise_model(model)}")


if __name__ == "__main__":
    main()
