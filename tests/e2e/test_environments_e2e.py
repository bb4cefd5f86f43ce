"""Submission environments (`environment: {requirements: ...}`): a `command` submission's own
packages in a venv the harness builds with pip, cached by content, bound read-only into the
sandbox; its build recorded on the run; a failed build fails the run with pip's last lines.

The package is a wheel made here (offline, no registry): pip installs it from the folder."""

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

QUICK = ["--min-queries", "10", "--min-duration", "0", "--max-duration", "5", "--warmup", "1", "--no-meters",
         "--profile", "cpu-1core"]


def cli(*args, db, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, "--db", db], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def make_wheel(folder, name="heptaprobe", version="0.1", body="ANSWER = 1\n"):
    """A pure-Python wheel (PEP 427) with one module."""
    files = {f"{name}/__init__.py": body.encode(),
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                 b"Tag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return whl.name


SERVE = '''
import json, sys
import heptaprobe  # only in the submission's own environment
from heptathlon.runners.stdio import serve

def load():
    return heptaprobe.ANSWER

def predict(answer, x):
    return [answer % 2] * len(x)

if __name__ == "__main__":
    serve(predict, load)
'''


@pytest.fixture
def env_submission(examples, tmp_path):
    folder = tmp_path / "env-sub"
    shutil.copytree(examples["arrests-mlp-command"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    whl = make_wheel(folder)
    (folder / "requirements.txt").write_text(f"./{whl}\n")
    (folder / "serve.py").write_text(SERVE)
    text = (folder / "submission.yaml").read_text().replace("name: arrests-mlp-command", "name: env-sub")
    (folder / "submission.yaml").write_text(text + "environment:\n  requirements: requirements.txt\n")
    return folder


def test_a_submission_runs_in_its_own_environment_built_once(env_submission, sqlite_url, tmp_path):
    envs = {"HEPTATHLON_ENV_DIR": str(tmp_path / "envs")}
    first = cli("run", str(env_submission), *QUICK, "--json", db=sqlite_url, env=envs)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["status"] == "succeeded", doc["error"]
    second = json.loads(cli("run", str(env_submission), *QUICK, "--json", db=sqlite_url, env=envs).stdout)
    assert second["status"] == "succeeded", second["error"]
    import sqlite3

    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    recs = [json.loads(x)["environment"] for (x,) in con.execute(
        "select extra from run where id in (?, ?) order by created_at", (doc["run_id"], second["run_id"]))]
    assert recs[0]["built"] is True and recs[0]["build_s"] > 0 and "heptaprobe" in recs[0]["log_tail"]
    assert recs[1]["built"] is False and recs[1]["key"] == recs[0]["key"]  # the cache, shared between runs
    assert list((tmp_path / "envs").glob("*/.complete"))


def test_the_same_submission_without_its_environment_cannot_import_the_package(env_submission, sqlite_url):
    text = (env_submission / "submission.yaml").read_text().split("environment:")[0]
    (env_submission / "submission.yaml").write_text(text)
    p = cli("run", str(env_submission), *QUICK, "--json", db=sqlite_url)
    doc = json.loads(p.stdout)
    assert doc["status"] == "failed"
    import sqlite3

    tail = sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).execute(
        "select stderr_tail from run where id = ?", (doc["run_id"],)).fetchone()[0]
    assert "No module named 'heptaprobe'" in tail  # the control: the package is the environment's, not the harness's


def test_a_failed_build_fails_the_run_with_pips_last_lines(env_submission, sqlite_url, tmp_path):
    (env_submission / "requirements.txt").write_text("./no-such-wheel-0.1-py3-none-any.whl\n")
    p = cli("run", str(env_submission), *QUICK, "--json", db=sqlite_url, env={"HEPTATHLON_ENV_DIR": str(tmp_path / "e")})
    doc = json.loads(p.stdout)
    assert doc["status"] == "failed"
    assert "field 'environment.requirements'" in doc["error"] and "no-such-wheel" in doc["error"], doc["error"]
    assert not list((tmp_path / "e").glob("*/.complete"))  # nothing half-built is kept


def test_a_missing_requirements_file_is_one_line_naming_the_field(env_submission, sqlite_url):
    (env_submission / "requirements.txt").unlink()
    p = cli("run", str(env_submission), *QUICK, db=sqlite_url)
    assert p.returncode != 0
    assert "field 'environment.requirements': file 'requirements.txt' not found" in p.stderr, p.stderr


def test_the_environment_is_read_only_inside_the_sandbox(env_submission, sqlite_url, tmp_path):
    (env_submission / "serve.py").write_text(SERVE.replace("def load():", '''def load():
    import os
    target = os.path.join(os.path.dirname(heptaprobe.__file__), "__init__.py")
    try:
        with open(target, "a") as f:
            f.write("ANSWER = 0\\n")
    except OSError as e:
        print(f"write refused: {e}", file=sys.stderr)
    else:
        sys.exit(3)  # the submission changed its own environment: the test fails on this run's status
'''))
    p = cli("run", str(env_submission), *QUICK, "--json", db=sqlite_url, env={"HEPTATHLON_ENV_DIR": str(tmp_path / "v")})
    doc = json.loads(p.stdout)
    assert doc["status"] == "succeeded", doc["error"]


def test_an_environment_on_a_kind_without_its_own_interpreter_is_refused(examples, tmp_path):
    from heptathlon.bench.errors import SubmissionError
    from heptathlon.bench.manifest import load_manifest

    folder = tmp_path / "onnx-env"
    shutil.copytree(examples["arrests-mlp-onnx"], folder)
    (folder / "requirements.txt").write_text("numpy\n")
    (folder / "submission.yaml").write_text((folder / "submission.yaml").read_text()
                                            + "environment:\n  requirements: requirements.txt\n")
    with pytest.raises(SubmissionError, match="field 'environment': only kind command"):
        load_manifest(folder)
