"""False-positive rate and detection rates of the nightly regression detector on simulated series.

Each series is N nights; each night runs k trials (fresh workers, the nightly default 3), each
trial has lognormal per-query latencies whose scale varies between nights (--drift, sd of the
log factor) and between trials of one night (--trial-sd). Every night is checked against the
nights before it with the production code path (heptathlon.bench.regression.check_series,
replayed by tests/regression_sim.py; default DetectionConfig unless overridden).

    python benchmarks/nightly_false_positives.py                      # 200 series at the default noise
    python benchmarks/nightly_false_positives.py --drift 0.01 0.02 --trial-sd 0.013 --series 500

What it prints, per noise setting:
- the false-positive rate: nights flagged as a regression in noise-only series (per night checked,
  and per series: any night);
- the detection rate of a 5% and a 10% step from night --step-from, per metric: p50 (the whole
  distribution slows), p99 (only the slowest 10% of queries slow: p50 stays), throughput (the
  whole distribution slows by 1/(1 - step)). A hit is the metric flagged at the step night with
  no alarm on the nights before.
The defaults for --drift and --trial-sd are this project's measured between-run noise of the
calibrated busy-wait (docs/performance.md: 1.3% between runs); measure yours with
benchmarks/ci_coverage.py and pass it here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulation lives in tests/

from heptathlon.bench.regression import DetectionConfig  # noqa: E402
from tests.regression_sim import SimulationSpec, estimate_detection_rate, estimate_false_positive_rate  # noqa: E402

METRICS = ("latency_p50_ms", "latency_p99_ms", "throughput_sps")


def _ci(r) -> str:
    return f"{r.rate:6.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=200, help="simulated series per setting")
    ap.add_argument("--nights", type=int, default=SimulationSpec.nights)
    ap.add_argument("--queries", type=int, default=SimulationSpec.n_queries, help="per-query samples per trial")
    ap.add_argument("--trials", type=int, default=3, help="trials per night (the nightly default is 3)")
    ap.add_argument("--drift", type=float, nargs="+", default=[0.01],
                    help="between-night drift, sd of the log factor (0.01 = 1%%)")
    ap.add_argument("--trial-sd", type=float, default=0.013, help="between-trial sd within a night (log factor)")
    ap.add_argument("--z", type=float, nargs="+", default=[DetectionConfig.z_threshold], help="z-score thresholds")
    ap.add_argument("--steps", type=float, nargs="+", default=[0.05, 0.10])
    ap.add_argument("--step-from", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"{args.series} series x {args.nights} nights, {args.trials} trials/night x {args.queries} queries, "
          f"window {DetectionConfig.window} (min {DetectionConfig.min_window}), threshold "
          f"{DetectionConfig.default_threshold:.0%}, p < {DetectionConfig.p_value}, trial sd {args.trial_sd:.1%}")
    for drift in args.drift:
        for z in args.z:
            t0 = time.perf_counter()
            config = DetectionConfig(z_threshold=z)
            base = {"n_queries": args.queries, "drift_sd": drift, "trials": args.trials, "trial_sd": args.trial_sd,
                    "metrics": METRICS}
            fp = estimate_false_positive_rate(args.series, SimulationSpec(nights=args.nights, **base), config,
                                              seed=args.seed)
            print(f"\ndrift {drift:.1%}, z {z:g}: false positives per night checked {_ci(fp.per_night)} "
                  f"({fp.per_night.hits}/{fp.per_night.trials}); per series (any of {args.nights} nights) "
                  f"{_ci(fp.per_series)}")
            print(f"  {'step':>5}  {'p50 (all slower)':<24} {'p99 (tail only)':<24} {'throughput':<24}")
            for step in args.steps:
                cells = []
                for metric, extra in (("latency_p50_ms", {"slowdown": step}),
                                      ("latency_p99_ms", {"slowdown": step, "tail_only": True}),
                                      ("throughput_sps", {"slowdown": 1 / (1 - step) - 1})):
                    spec = SimulationSpec(nights=args.step_from, slowdown_from=args.step_from, **base, **extra)
                    r = estimate_detection_rate(args.series, spec, config, seed=args.seed + 1, metric=metric)
                    cells.append(_ci(r))
                print(f"  {step:5.0%}  " + " ".join(f"{c:<24}" for c in cells), flush=True)
            print(f"  [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
