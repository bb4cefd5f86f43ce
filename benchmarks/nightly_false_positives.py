"""False-positive rate (and detection rate) of the nightly regression detector on simulated series.

Each series is N nights of lognormal per-query latencies whose scale drifts from night to night
(sd of the log factor = --drift). Every night is checked against the nights before it with the
production code path (heptathlon.bench.regression.check_series, replayed by tests/regression_sim.py;
default DetectionConfig unless overridden).

    python benchmarks/nightly_false_positives.py                  # 500 series at the default noise
    python benchmarks/nightly_false_positives.py --drift 0.01 0.02 0.03 --z 3 4

A false positive is a night flagged as a regression in a noise-only series. The detection rate is
the share of series with an 8% slowdown from night 6 that are flagged at night 6 and not before.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulation lives in tests/

from heptathlon.bench.regression import DetectionConfig  # noqa: E402
from tests.regression_sim import SimulationSpec, estimate_detection_rate, estimate_false_positive_rate  # noqa: E402


def _ci(r) -> str:
    return f"{r.rate:6.2%} [{r.ci_low:.2%}, {r.ci_high:.2%}] ({r.hits}/{r.trials})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=500, help="simulated series per setting")
    ap.add_argument("--nights", type=int, default=SimulationSpec.nights)
    ap.add_argument("--queries", type=int, default=SimulationSpec.n_queries, help="per-query samples per night")
    ap.add_argument("--drift", type=float, nargs="+", default=[SimulationSpec.drift_sd],
                    help="between-night drift, sd of the log factor (0.01 = 1%%)")
    ap.add_argument("--z", type=float, nargs="+", default=[DetectionConfig.z_threshold], help="z-score thresholds")
    ap.add_argument("--slowdown", type=float, default=0.08)
    ap.add_argument("--slowdown-from", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"{args.series} series x {args.nights} nights, {args.queries} queries/night, "
          f"metrics p50/p99/mean, window {DetectionConfig.window} (min {DetectionConfig.min_window}), "
          f"threshold {DetectionConfig.default_threshold:.0%}, p < {DetectionConfig.p_value}")
    print(f"{'drift':>6} {'z':>4}  {'FP per series (any night)':<32} {'FP per night checked':<34} "
          f"detected at night {args.slowdown_from} ({args.slowdown:.0%} slowdown)")
    for drift in args.drift:
        for z in args.z:
            t0 = time.perf_counter()
            config = DetectionConfig(z_threshold=z)
            noise = SimulationSpec(nights=args.nights, n_queries=args.queries, drift_sd=drift)
            fp = estimate_false_positive_rate(args.series, noise, config, seed=args.seed)
            step = SimulationSpec(nights=args.slowdown_from, n_queries=args.queries, drift_sd=drift,
                                  slowdown=args.slowdown, slowdown_from=args.slowdown_from)
            power = estimate_detection_rate(args.series, step, config, seed=args.seed + 1)
            print(f"{drift:6.1%} {z:4.1f}  {_ci(fp.per_series):<32} {_ci(fp.per_night):<34} {_ci(power)}"
                  f"   [{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
