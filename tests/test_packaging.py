"""The built wheel works outside the checkout: one namespace, profiles and migrations as package data.

The wheel is built from this checkout and installed, non-editable and without its dependencies,
into a fresh venv. The dependencies come from the test's own environment through a plain path
entry in a .pth file: a path line adds that site-packages to sys.path without processing the .pth
files inside it, so the checkout's editable finder stays out and ``heptathlon`` can only come from
the wheel. (A full dependency install would download and unpack torch: minutes, not the point.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build backend (setuptools) is already in this environment.
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(REPO)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = out.glob("heptathlon-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    (purelib / "zz_heptathlon_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    outside = root / "outside"  # not the checkout, and no submissions/ folder next to it
    outside.mkdir()
    return {"python": py, "cli": env_dir / "bin" / "heptathlon", "cwd": outside}


def _run(installed, *args, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEPTATHLON_", "PYTHON"))}
    return subprocess.run([str(a) for a in args], cwd=installed["cwd"], capture_output=True, text=True, env=env, **kw)


def test_wheel_holds_one_namespace_and_its_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"heptathlon"}
    profiles = sorted(p.name for p in (REPO / "hw_profiles").glob("*.yaml"))
    assert all(f"heptathlon/hw_profiles/{p}" in names for p in profiles)
    assert "heptathlon/db/migrations/env.py" in names and "heptathlon/db/migrations/script.py.mako" in names
    assert any(n.startswith("heptathlon/db/migrations/versions/0001_") for n in names)
    assert "heptathlon/dashboard/app.py" in names and "heptathlon/dashboard/views/leaderboard.py" in names
    assert not [n for n in names if n.startswith(("heptathlon/benchmarks", "heptathlon/submissions", "heptathlon/tests"))]


def test_installed_wheel_is_not_the_checkout(installed):
    p = _run(installed, installed["python"], "-c", "import heptathlon.bench, json; print(json.dumps(heptathlon.bench.__path__[0]))")
    assert p.returncode == 0, p.stderr
    assert not Path(json.loads(p.stdout)).is_relative_to(REPO)


@pytest.mark.parametrize("generic", ["db", "bench", "runners", "dashboard", "benchmarks"])
def test_no_generic_top_level_packages(installed, generic):
    p = _run(installed, installed["python"], "-c", f"import {generic}")
    assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr


def test_profiles_list_shows_every_bundled_profile(installed):
    p = _run(installed, installed["cli"], "profiles", "list", "--json")
    assert p.returncode == 0, p.stderr
    shown = {row["name"] for row in json.loads(p.stdout)}
    assert shown == {f.stem for f in (REPO / "hw_profiles").glob("*.yaml")}


def test_db_upgrade_and_a_run_of_a_copied_example(installed, examples, tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    p = _run(installed, installed["cli"], "db", "upgrade", "--db", url)
    assert p.returncode == 0, p.stderr
    sub = tmp_path / "my-submission"
    shutil.copytree(examples["arrests-mlp-onnx"], sub)
    p = _run(installed, installed["cli"], "run", sub, "--profile", "cpu-1core", "--scenario", "single_stream",
             "--json", "--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2",
             "--no-meters", "--db", url)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["status"] == "succeeded", doc["error"]
    assert doc["metrics"]["latency_p50_ms"]["n"] >= 20 and doc["metrics"]["accuracy"]["value"] > 0.75


def test_demo_outside_a_checkout_says_where_the_examples_are(installed, tmp_path):
    p = _run(installed, installed["cli"], "demo", "--db", f"sqlite:///{tmp_path / 'results.db'}")
    assert p.returncode == 2
    assert "no example submissions in" in p.stderr and "HEPTATHLON_EXAMPLES_DIR" in p.stderr
