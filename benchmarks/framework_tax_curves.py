"""Framework-tax curves for the two synthetic models on this machine.

For each model (tiny-ops: overhead-bound; big-matmul: compute-bound) and each runtime that
works here (eager, TorchScript, torch.compile, ONNX Runtime) it prints:
- latency against batch size (median of repeats, from an unprofiled sweep),
- the measured framework tax FT(b) with its 95% CI (separate profiled pass),
- the batch knee b* and the intercept estimate of fixed overhead,
- each runtime's latency relative to the best runtime's, per batch size,
- how much the profiler inflates the wall time of a call (profiled / unprofiled).

    .venv/bin/python benchmarks/framework_tax_curves.py [--threads 1] [--quick]

Numbers go in docs/framework-tax.md. Timings are wall-clock and machine-specific.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from heptathlon.bench.framework_tax import estimate_fixed_overhead, fit_batch_knee, relative_to_best  # noqa: E402
from tests.synthetic import make_input, synthetic_models  # noqa: E402
from heptathlon.runners.profiling import batch_sweep, decompose_call, powers_of_two  # noqa: E402
from heptathlon.runners.adapters.derive import derive_runtimes  # noqa: E402
from heptathlon.runners.adapters.registry import RUNTIMES  # noqa: E402

CAPS = {"tiny-ops": 1024, "big-matmul": 256}
TAX_BATCHES = {"tiny-ops": [1, 4, 16, 64, 256, 1024], "big-matmul": [1, 4, 16, 64]}


def _fmt_ms(s: float) -> str:
    return f"{s * 1e3:8.3f}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    def session_options():
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        return so

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}; threads={args.threads} (torch and ORT)")
    print("load average at start (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    include = [r for r in RUNTIMES if r not in args.skip]
    for model_name, model in synthetic_models().items():
        cap = min(CAPS[model_name], args.max_batch) if args.max_batch else CAPS[model_name]
        sizes = powers_of_two(cap)
        tax_sizes = [b for b in TAX_BATCHES[model_name] if b <= cap]
        print(f"\n=== {model_name}: {model.__class__.__name__}, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters ===")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cands = derive_runtimes(model, make_input(model, 2), include=include, make_session_options=session_options)
        rows = []
        for name, rt in cands.items():
            how = (rt.details or {}).get("how", "")
            rows.append([name, "yes" if rt.available else "no",
                         f"{rt.convert_s:.2f}" if rt.convert_s is not None else "-",
                         how if rt.available else (rt.reason or "")[:110]])
        _table(f"runtimes (derived in {time.perf_counter() - t0:.1f} s)", ["runtime", "available", "convert_s", "how / why not"], rows)

        sweeps, taxes, medians = {}, {}, {}
        for name, rt in cands.items():
            if not rt.available:
                continue
            sweeps[name] = batch_sweep(rt.predict, lambda b, rt=rt: rt.prepare(make_input(model, b)), batch_sizes=sizes,
                                       repeats=args.repeats, min_time_s=args.min_time, warmup=2)
            medians[name] = sweeps[name].median_latency_s()
            taxes[name] = {b: decompose_call(rt, make_input(model, b), repeats=args.profile_repeats, warmup=2)
                           for b in tax_sizes if b in medians[name]}

        names = list(sweeps)
        rows = [[str(b)] + [(_fmt_ms(medians[n][b]) if b in medians[n] else "-") for n in names] for b in sizes]
        _table("latency p50 (ms) by batch size, unprofiled sweep", ["batch"] + names, rows)
        for n in names:
            if sweeps[n].stop_reason:
                print(f"  {n}: sweep stopped: {sweeps[n].stop_reason}")

        rows = []
        for b in tax_sizes:
            row = [str(b)]
            for n in names:
                d = taxes[n].get(b)
                mv = d.tax(n_resamples=args.resamples) if d is not None else None
                if mv is None:
                    row.append("-")
                elif mv.value is None:
                    row.append("unavailable")
                else:
                    row.append(f"{mv.value:.3f} [{mv.ci_low:.3f},{mv.ci_high:.3f}]")
            rows.append(row)
        _table("framework tax FT(b) = (T_wall - T_compute)/T_wall, median [95% CI], profiled pass",
               ["batch"] + names, rows)
        for n in names:
            for b, d in taxes[n].items():
                if not d.available:
                    print(f"  {n} b={b}: unavailable: {d.reason}")

        rows = []
        for b in tax_sizes:
            row = [str(b)]
            for n in names:
                d = taxes[n].get(b)
                if d is None or not d.available or b not in medians[n]:
                    row.append("-")
                    continue
                wall = sorted(d.wall_s)[len(d.wall_s) // 2]
                comp = sorted(d.compute_s)[len(d.compute_s) // 2]
                row.append(f"{_fmt_ms(comp).strip()}/{_fmt_ms(wall).strip()} x{wall / medians[n][b]:.2f}")
            rows.append(row)
        _table("profiled pass: compute / wall ms (medians), x = profiled wall / unprofiled p50",
               ["batch"] + names, rows)

        rows = []
        for n in names:
            s = sweeps[n]
            if len(s.batch_sizes) < 3:
                rows.append([n, "-", "-", "-", "-", "-"])
                continue
            fit = fit_batch_knee(s.batch_sizes, s.latencies_s, n_resamples=args.resamples)
            ov = estimate_fixed_overhead(s.batch_sizes, s.latencies_s, n_resamples=args.resamples)
            ci = f"[{fit.ci_low:.1f},{fit.ci_high:.1f}]" if fit.ci_low is not None else ""
            ov_ci = f"[{ov.ci_low:.3f},{ov.ci_high:.3f}]" if ov.ci_low is not None else ""
            cross = "-"
            if fit.crossover_batch is not None:
                cross = f"{fit.crossover_batch:.0f}"
                if fit.crossover_ci_low is not None and fit.crossover_ci_high is not None:
                    cross += f" [{fit.crossover_ci_low:.0f},{fit.crossover_ci_high:.0f}]"
            rows.append([n, f"{fit.knee_batch:.1f} {ci}", "yes" if fit.flat_observed else "no",
                         _fmt_ms(fit.flat_latency_s).strip(), f"{fit.slope_s_per_sample * 1e6:.2f}", cross,
                         f"{ov.value:.3f} {ov_ci}"])
        _table("batch knee (continuous flat-then-linear fit), crossover = intercept/slope, fixed overhead "
               "(estimate:intercept)",
               ["runtime", "knee b* [95% CI]", "flat seen", "flat ms", "slope us/sample", "crossover b [95% CI]",
                "fixed overhead ms [95% CI]"], rows)

        print(f"\nload average now: {os.getloadavg()[0]:.2f}")
        rel = relative_to_best(medians)
        rows = [[str(b)] + [(f"{rel[n][b]:.2f}" if b in rel[n] else "-") for n in names] for b in sizes]
        _table("latency relative to the best runtime at each batch size (1.00 = best)", ["batch"] + names, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15, help="timed calls per batch size in the sweep")
    p.add_argument("--min-time", type=float, default=0.05, help="minimum timed seconds per batch size")
    p.add_argument("--profile-repeats", type=int, default=15, help="profiled calls per batch size")
    p.add_argument("--resamples", type=int, default=500, help="bootstrap resamples")
    p.add_argument("--max-batch", type=int, default=None, help="cap every sweep at this batch size")
    p.add_argument("--skip", nargs="*", default=[], choices=list(RUNTIMES), help="runtimes to leave out")
    p.add_argument("--quick", action="store_true", help="small sweep, no torch.compile (for a smoke run)")
    args = p.parse_args()
    if args.quick:
        args.max_batch, args.repeats, args.profile_repeats, args.resamples = 16, 5, 5, 100
        args.skip = sorted(set(args.skip) | {"torch.compile"})
    run(args)


if __name__ == "__main__":
    main()
