"""CPU cost of the meters while a window is open, as a share of one core.

    python benchmarks/meter_overhead.py [--seconds 10]

- ``PeriodicSampler`` at the default 0.1 s interval: the sampler thread's own CPU time
  (``time.thread_time`` inside the thread) over wall time. It reads NVML power where a
  GPU exists, and otherwise a no-op, which isolates the thread's wake-up cost.
- Each meter ``select_meters`` picks on this machine: process CPU time over wall time
  while its window is open and the main thread waits idle.

Target: <= 0.5% of one core for a sampler thread at its default rate.
"""

from __future__ import annotations

import argparse
import threading
import time

from heptathlon.runners.meters import PeriodicSampler, select_meters
from heptathlon.runners.meters.base import MeterUnavailable
from heptathlon.runners.meters.nvml import DEFAULT_POWER_INTERVAL_S, NvmlDevice

TARGET_PERCENT = 0.5


def sampler_share(read, seconds: float, interval_s: float) -> tuple[float, int]:
    sampler = PeriodicSampler(read, interval_s, name="overhead-probe")
    t0 = time.perf_counter()
    sampler.start()
    threading.Event().wait(seconds)
    samples = sampler.stop()
    wall = time.perf_counter() - t0
    return 100.0 * (sampler.thread_cpu_s or 0.0) / wall, len(samples)


def meter_window_share(selection, seconds: float) -> float:
    selection.start()  # outside the measured span: codecarbon's first start probes hardware
    c0, t0 = time.process_time(), time.perf_counter()
    threading.Event().wait(seconds)
    c1, t1 = time.process_time(), time.perf_counter()
    selection.stop()
    return 100.0 * (c1 - c0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N, for the meter part")
    args = parser.parse_args()

    try:
        device = NvmlDevice(0)
        read, source = device.read_average_power_w, "nvmlDeviceGetPowerUsage"
    except MeterUnavailable as exc:
        device, read, source = None, (lambda: 0.0), f"no-op read (NVML unavailable: {exc})"
    share, n = sampler_share(read, args.seconds, DEFAULT_POWER_INTERVAL_S)
    verdict = "within" if share <= TARGET_PERCENT else "ABOVE"
    print(f"sampler thread @ {DEFAULT_POWER_INTERVAL_S:g} s, {source}: {share:.3f}% of one core "
          f"({n} samples over {args.seconds:g} s; {verdict} the {TARGET_PERCENT}% target)")
    if device is not None:
        device.close()

    with select_meters(args.device) as selection:
        if not selection.meters:
            print(f"no meters on this machine for {args.device}: {selection.unmetered}")
            return
        selection.start()
        selection.stop()  # warm-up window: codecarbon probes the hardware once per process
        share = meter_window_share(selection, args.seconds)
        print(f"meters {'+'.join(selection.methods)} on {args.device}: process CPU {share:.3f}% of one core "
              f"while a {args.seconds:g} s window is open (main thread idle)")


if __name__ == "__main__":
    main()
