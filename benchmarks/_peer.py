"""Shared bits of the optimum-benchmark comparisons (generate_peer.py, encoder_peer.py): the peer
venv check and its recipe, a pinned child run with its wall time and the share of its core other
processes took, and the copy of the cpu-1core profile pinned to another core.

Imported as ``from _peer import ...``: each script runs from benchmarks/, so this folder is on
``sys.path``. Errors stop the script with one line prefixed by its name.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

PEER_RECIPE = ("python3 -m venv /work/peer-venv && /work/peer-venv/bin/pip install torch==2.13.0 && "
               "/work/peer-venv/bin/pip install torch==2.13.0 optimum-benchmark==0.6.0 'transformers<5' "
               "'datasets>=4,<5' 'huggingface-hub<1'")

# One thread everywhere, offline: the environment of every pinned child (either venv).
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def fail(msg: str) -> None:
    sys.exit(f"{Path(sys.argv[0]).stem or 'peer'}: {msg}")


def check_peer(peer: str | None) -> str:
    if not peer:
        fail(f"no peer venv given (--peer-python or HEPTATHLON_PEER_PYTHON); create it: {PEER_RECIPE}")
    if not Path(peer).is_file():
        fail(f"peer python {peer} not found; create the peer venv: {PEER_RECIPE}")
    r = subprocess.run([peer, "-c", "import optimum_benchmark, transformers, torch"], check=False,
                       capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        fail(f"{peer} cannot import optimum_benchmark ({last}); create the peer venv: {PEER_RECIPE}")
    return peer


def core_busy_s(cpu: int | None) -> float | None:
    """Busy seconds of one core so far (/proc/stat), or None where it cannot be read."""
    try:
        for ln in Path("/proc/stat").read_text().splitlines():
            f = ln.split()
            if cpu is not None and f[0] == f"cpu{cpu}":
                t = [int(x) for x in f[1:9]]
                return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    return None


def timed_run(cmd: list[str], env: dict | None = None, cpu: int | None = None,
              cwd: Path | str | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run one child; (its result, {"wall_s": process start to exit as this script saw it,
    "contention_share": the share of ``cpu`` other processes took while it ran, i.e. the core's
    busy time minus the child's own CPU time, over the wall time})."""
    b0, c0, w0 = core_busy_s(cpu), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd or tempfile.gettempdir())
    b1, c1, w1 = core_busy_s(cpu), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    info: dict = {"wall_s": w1 - w0}
    if b0 is not None and b1 is not None:
        own = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        info["contention_share"] = max(0.0, (b1 - b0 - own) / (w1 - w0))
    return r, info


def result_of(cmd: list[str], what: str, env: dict | None = None, cpu: int | None = None) -> dict:
    """Run one pinned child; its RESULT line, plus ``wall_s`` and ``contention_share`` (timed_run)."""
    r, info = timed_run(cmd, env, cpu)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or ["no output"])[-1]
        fail(f"{what} failed (exit {r.returncode}): {tail}")
    return {**json.loads(lines[-1][len("RESULT "):]), **info}


def profile_for(cpu: int, work: Path) -> tuple[str, dict]:
    """(profile name, environment): cpu-1core itself on core 0; on another core, a copy of it pinned
    there, in a profiles folder (HEPTATHLON_PROFILES_DIR) holding the bundled ones too."""
    if cpu == 0:
        return "cpu-1core", dict(os.environ)
    import yaml

    folder = work / "hw_profiles"
    shutil.copytree(REPO / "hw_profiles", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    raw = yaml.safe_load((folder / "cpu-1core.yaml").read_text())
    raw.update(name=f"cpu-1core-c{cpu}", description=f"cpu-1core pinned to core {cpu}", default=False)
    raw["cpu"]["cores"] = [cpu]
    (folder / f"cpu-1core-c{cpu}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return f"cpu-1core-c{cpu}", {**os.environ, "HEPTATHLON_PROFILES_DIR": str(folder)}


def fmt(v: list[float]) -> str:
    """Median [min-max] of a list of per-round values, 3 significant digits."""
    m = float(np.median(v))
    return f"{m:,.3g}" + (f" [{min(v):,.3g}-{max(v):,.3g}]" if len(v) > 1 else "")


# The opening of every child script: its arguments (JSON in argv[1]), pinned to a["cpu"], one torch thread.
CHILD_PRELUDE = r'''import json, os, sys, time
a = json.loads(sys.argv[1])
if a["cpu"] is not None:
    os.sched_setaffinity(0, {a["cpu"]})
import torch
torch.set_num_threads(1)
torch.set_num_interop_threads(1)
'''
