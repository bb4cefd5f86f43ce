"""`heptathlon profiles check NAME`: show, control by control, that a profile really holds.

Each probe is a fresh ``python -m heptathlon.runners.probe ...`` process (spawned and exec'd, never a
fork of the parent), started exactly as a worker is: in its own run cgroup, with the
profile's environment, calling ``apply_controls`` first. It then looks at itself from the
inside (affinity, cgroup, thread pools) or does something the profile must stop (allocate
past the memory limit) or slow down (spin under a CPU quota).

The quota check compares against an unconstrained probe and reports the measured ratio as
data; its ``ok`` rests on the kernel's accounting (CPU time within quota x periods), which
holds on a busy machine too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heptathlon.bench.profile import Profile
from heptathlon.runners.controls import (
    apply_controls,
    CFS_PERIOD_US,
    apply_torch_controls,
    control_env,
    create_run_cgroup,
    format_size,
    memory_limit_kill_reason,
    validate_profile_for_machine,
)

PROBE_TIMEOUT_S = 120
_ALLOC_CHUNK = 16 * 2**20


@dataclass(frozen=True)
class CheckResult:
    """One control: what the profile asks, what the probe saw, and whether that holds.

    ``ok`` is None for a check that was skipped or is informational.
    """

    control: str
    requested: Any
    observed: Any
    mechanism: str | None
    ok: bool | None
    detail: str = ""


@dataclass
class _Probe:
    returncode: int
    stdout: str
    stderr: str
    cgroup: dict[str, Any]

    def report(self) -> dict[str, Any]:
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def _spawn(profile: Profile, mode: str, *args: str, cgroup: bool = True) -> _Probe:
    """Run one probe process under the profile, as the executor runs a worker."""
    argv = [sys.executable, "-m", "heptathlon.runners.probe", mode, profile.model_dump_json(), *args]
    env = {**os.environ, **control_env(profile), "PYTHONUNBUFFERED": "1"}
    handle = create_run_cgroup(f"probe-{mode}", profile) if cgroup else None
    try:
        if handle is not None:
            argv = handle.wrap_argv(argv)
            env.update(handle.env())
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
        cg: dict[str, Any] = {}
        if handle is not None:
            cg = {"peak_memory_bytes": handle.peak_memory_bytes(), "oom_kill": handle.oom_kill_count(),
                  "cpu_stat": handle.cpu_stat(),
                  "kill_reason": memory_limit_kill_reason(profile, r.returncode, r.stderr, handle)}
        elif profile.memory_limit:
            cg = {"kill_reason": memory_limit_kill_reason(profile, r.returncode, r.stderr, None)}
        return _Probe(r.returncode, r.stdout, r.stderr, cg)
    finally:
        if handle is not None:
            handle.cleanup()


def _failed(control: str, requested: Any, probe: _Probe) -> CheckResult:
    tail = " ".join(probe.stderr.strip().splitlines()[-1:])[:300]
    return CheckResult(control, requested, None, None, False, f"probe exited with {probe.returncode}: {tail}")


def _check_controls(profile: Profile) -> list[CheckResult]:
    probe = _spawn(profile, "controls")
    rep = probe.report()
    if probe.returncode != 0 or not rep:
        return [_failed("controls", None, probe)]
    applied, out = rep["applied"], []
    cores = profile.cpu.cores
    affinity = rep["affinity"]
    rec = applied.get("cpu.cores", {})
    out.append(CheckResult("cpu.cores", cores or "all", affinity, rec.get("mechanism"),
                           None if cores is None else affinity == sorted(cores),
                           "the worker sees only the pinned cores" if cores else "no pinning requested"))
    torch = rep.get("torch")
    if torch:
        ok = torch["threads"] == profile.cpu.threads and all(v == str(profile.cpu.threads)
                                                             for v in rep["thread_env"].values())
        out.append(CheckResult("cpu.threads", profile.cpu.threads,
                               {"torch": torch["threads"], "env": rep["thread_env"]},
                               "environment + torch.set_num_threads", ok))
        interop = torch["interop_threads"]
        out.append(CheckResult("cpu.interop_threads", profile.cpu.interop_threads, interop,
                               "torch.set_num_interop_threads", interop == profile.cpu.interop_threads))
        for key in ("gpu.index", "gpu.tf32", "gpu.memory_fraction"):
            if key in torch["controls"]:
                r = torch["controls"][key]
                out.append(CheckResult(key, r["requested"], r["effective"], r["mechanism"], r["took_effect"]))
    else:
        ok = all(v == str(profile.cpu.threads) for v in rep["thread_env"].values())
        out.append(CheckResult("cpu.threads", profile.cpu.threads, {"env": rep["thread_env"]}, "environment", ok,
                               "torch is not installed: only the environment was checked"))
    member = applied["cgroup"]["member"]
    out.append(CheckResult("cgroup", "a fresh per-run cgroup", applied["cgroup"]["dirs"] or None,
                           ", ".join(f"v{v} {c}" for c, v in applied["cgroup"]["versions"].items()) or None,
                           all(member.values()) if member else None,
                           "; ".join(f"{c}: {p}" for c, p in applied["cgroup"]["problems"].items())))
    if "precision" in rep:
        p = rep["precision"]
        out.append(CheckResult("precision", profile.precision, p.get("effective"), p.get("mechanism"),
                               p.get("took_effect"), p.get("detail", "")))
    return out


def _check_memory(profile: Profile) -> CheckResult:
    import psutil

    limit = profile.memory_limit_bytes
    target = limit + max(limit // 2, 64 * 2**20)
    if target > psutil.virtual_memory().available // 2:
        return CheckResult("memory_limit", format_size(limit), None, None, None,
                           f"skipped: allocating {format_size(target)} to test it would strain this machine")
    probe = _spawn(profile, "allocate", str(target))
    rep = probe.report()
    stopped = probe.returncode != 0 and probe.cgroup.get("kill_reason") is not None
    how = (f"killed by {signal.Signals(-probe.returncode).name}" if probe.returncode < 0
           else f"exited {probe.returncode}")
    observed = {"allocated_before_stop": format_size(rep.get("allocated", 0)), "outcome": how if probe.returncode
                else "allocated everything", "peak_memory_bytes": probe.cgroup.get("peak_memory_bytes"),
                "oom_kills": probe.cgroup.get("oom_kill")}
    mech = rep.get("mechanism")
    detail = (f"a probe allocating {format_size(target)} was stopped: {probe.cgroup['kill_reason']}" if stopped
              else f"a probe allocated {format_size(rep.get('allocated', 0))} of {format_size(target)} "
                   f"and was not stopped")
    return CheckResult("memory_limit", format_size(limit), observed, mech, stopped, detail)


def _check_quota(profile: Profile, spin_s: float) -> CheckResult:
    free = profile.model_copy(update={"cpu": profile.cpu.model_copy(update={"quota": None}),
                                      "memory_limit": None})
    base = _spawn(free, "spin", str(spin_s))
    capped = _spawn(profile, "spin", str(spin_s))
    rb, rc = base.report(), capped.report()
    if base.returncode or capped.returncode or not rb or not rc:
        return _failed("cpu.quota", profile.cpu.quota, capped if capped.returncode else base)
    quota = profile.cpu.quota
    ratio = (rc["iterations"] / rc["wall_s"]) / (rb["iterations"] / rb["wall_s"])
    expected = min(quota, 1.0)  # the probe is one thread: a quota above 1 cannot slow it
    stat = capped.cgroup.get("cpu_stat") or {}
    periods = stat.get("nr_periods")
    observed = {"throughput_ratio": round(ratio, 3), "expected_ratio": expected,
                "cpu_share": round(rc["cpu_s"] / rc["wall_s"], 3),
                "unconstrained_cpu_share": round(rb["cpu_s"] / rb["wall_s"], 3),
                "nr_periods": periods, "nr_throttled": stat.get("nr_throttled")}
    # What CFS bandwidth control guarantees, from the kernel's own accounting: CPU time used
    # stays within quota x elapsed periods (+1 for the period in progress). It holds on a busy
    # machine too, where the throughput ratio is skewed by other load.
    ok = bool(periods) and rc["cpu_s"] <= (periods + 1) * quota * CFS_PERIOD_US / 1e6
    detail = (f"a CPU-bound probe ran at {ratio:.2f}x the speed of an unconstrained one (about {expected:.2f}x "
              f"expected on an idle core) and used {rc['cpu_s']:.2f} s of CPU in {periods} quota periods")
    if rb["cpu_s"] / rb["wall_s"] < 0.9:
        detail += (f"; the unconstrained probe got only {rb['cpu_s'] / rb['wall_s']:.0%} of its core, "
                   f"so other load on this machine skews the ratio")
    return CheckResult("cpu.quota", quota, observed, rc.get("mechanism"), ok, detail)


def _check_sandbox(profile: Profile) -> CheckResult:
    from heptathlon.runners.sandbox import cleanup_sandbox, sandbox_command

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    secret = "HEPTATHLON_DB"
    base_env = {**os.environ, secret: "postgresql://probe@127.0.0.1/never"}
    try:
        argv, env, rec = sandbox_command([sys.executable, "-m", "heptathlon.runners.probe", "sandbox",
                                          profile.model_dump_json(), str(port)], None, base_env=base_env,
                                         extra_env=control_env(profile), require=False)
        try:
            r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True,
                               timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        finally:
            cleanup_sandbox(rec)
    finally:
        listener.close()
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    rep = json.loads(lines[-1]) if lines else {}
    holds = rec["active"] and rep.get("tcp") == "refused" and not rep.get("saw_secret", True)
    observed = {"active": rec["active"], "tcp_to_host": rep.get("tcp"), "secret_env_visible": rep.get("saw_secret")}
    ok = holds if (profile.require_sandbox or rec["active"]) else None
    detail = (f"{rec['mechanism']}: {', '.join(rec['isolation'])}" if rec["active"]
              else f"no sandbox here ({rec.get('reason')})")
    return CheckResult("sandbox", "required" if profile.require_sandbox else "optional", observed, rec["mechanism"],
                       ok, detail)


def check_profile(profile: Profile, *, spin_s: float = 1.0, escape: dict[str, Any] | None = None) -> list[CheckResult]:
    """Probe every control of ``profile`` in fresh processes; one CheckResult per control.

    Raises ProfileError first when the machine cannot honour the profile at all (a CUDA
    profile without a GPU, a core that does not exist). ``escape``: keyword arguments of
    ``run_escape_probe`` (the real results DB and artifact store to try as well).
    """
    validate_profile_for_machine(profile)
    results = _check_controls(profile)
    if profile.cpu.quota is not None:
        results.append(_check_quota(profile, spin_s))
    if profile.memory_limit is not None:
        results.append(_check_memory(profile))
    results.append(_check_sandbox(profile))
    results.append(check_escape(profile, **(escape or {})))
    return results


def check_escape(profile: Profile, **targets: Any) -> CheckResult:
    """The escape probe (runners/escape_probe.py): ``observed`` lists every attempt. Any attempt that
    got through inside an active sandbox fails the check; without a sandbox the check fails only
    where the profile requires one (code-carrying kinds are refused there anyway)."""
    from dataclasses import asdict

    from heptathlon.runners.escape_probe import run_escape_probe

    try:
        attempts, rec = run_escape_probe(**targets)
    except RuntimeError as e:
        return CheckResult("sandbox.escape", "every attempt blocked", None, None, False, str(e))
    through = [a for a in attempts if not a.blocked]
    if rec["active"]:
        ok: bool | None = not through
    else:
        ok = False if profile.require_sandbox else None
    detail = (f"{len(attempts) - len(through)}/{len(attempts)} blocked"
              + (f"; GOT THROUGH: {', '.join(f'{a.attempt} {a.target}' for a in through)}" if through else "")
              + ("" if rec["active"] else f"; no sandbox here ({rec.get('reason')})"))
    return CheckResult("sandbox.escape", "every attempt blocked", [asdict(a) for a in attempts], rec["mechanism"],
                       ok, detail)


# -- the probe processes ---------------------------------------------------------------------

def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _precision_probe(profile: Profile) -> dict[str, Any]:
    """Run a tiny model in the profile's precision and show the numerics really changed."""
    if profile.precision == "int8":
        import tempfile

        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        from heptathlon.runners.quantize import quantize_onnx_int8

        rng = np.random.default_rng(0)
        w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [w])
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "probe.onnx"
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), src)
            q, rec = quantize_onnx_int8(src, Path(d) / "cache")
            x = rng.standard_normal((8, 16)).astype(np.float32)
            a = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
            b = ort.InferenceSession(str(q)).run(None, {"x": x})[0]
        diff = float(np.abs(a - b).max())
        return {**rec, "took_effect": rec["took_effect"] and diff > 0,
                "detail": f"tiny MatMul: max |int8 - fp32| = {diff:.2e} ({rec['quantized_nodes']} quantized nodes)"}
    import torch

    from heptathlon.runners.controls import torch_device
    from heptathlon.runners.quantize import prepare_torch_precision

    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 4)
    x = torch.randn(8, 16)
    ref = lin(x).detach()
    m, dtype, rec = prepare_torch_precision(lin, profile.precision, torch_device(profile), profile_name=profile.name)
    with torch.inference_mode():
        y = m(x.to(device=torch_device(profile), dtype=dtype))
    diff = float((y.float().cpu() - ref).abs().max())
    return {**rec, "detail": f"tiny Linear: output dtype {str(y.dtype).removeprefix('torch.')}, "
                             f"max |{profile.precision} - fp32| = {diff:.2e}"}


def _probe_controls(profile: Profile) -> None:
    applied = apply_controls(profile)
    rep: dict[str, Any] = {"applied": applied, "affinity": sorted(os.sched_getaffinity(0)),
                           "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        controls = apply_torch_controls(profile)
        rep["torch"] = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                        "controls": controls}
    try:
        rep["precision"] = _precision_probe(profile)
    except ImportError as e:
        rep["precision"] = {"effective": None, "took_effect": None, "detail": f"skipped: {e}"}
    _emit(rep)


def _probe_allocate(profile: Profile, target: int) -> None:
    applied = apply_controls(profile)
    mech = applied.get("memory_limit", {}).get("mechanism")
    held, total = [], 0
    while total < target:
        held.append(b"\x01" * _ALLOC_CHUNK)  # written, not just reserved: the pages are resident
        total += _ALLOC_CHUNK
        _emit({"allocated": total, "mechanism": mech})
    _emit({"allocated": total, "mechanism": mech, "survived": True})


def _probe_spin(profile: Profile, seconds: float) -> None:
    applied = apply_controls(profile)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    end = t0 + seconds
    while True:
        for _ in range(10_000):
            n += 1
        if time.perf_counter() >= end:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _emit({"iterations": n, "wall_s": wall, "cpu_s": cpu,
           "mechanism": applied.get("cpu.quota", {}).get("mechanism")})


def _probe_sandbox(port: int) -> None:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        tcp = "connected"
    except OSError:
        tcp = "refused"
    finally:
        s.close()
    _emit({"tcp": tcp, "saw_secret": "HEPTATHLON_DB" in os.environ})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode, profile = argv[0], Profile.model_validate_json(argv[1])
    if mode == "controls":
        _probe_controls(profile)
    elif mode == "allocate":
        _probe_allocate(profile, int(argv[2]))
    elif mode == "spin":
        _probe_spin(profile, float(argv[2]))
    elif mode == "sandbox":
        _probe_sandbox(int(argv[2]))
    else:
        raise SystemExit(f"unknown probe {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
