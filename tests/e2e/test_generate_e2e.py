"""The generate scenario from the CLI (`heptathlon run SUB --scenario generate ...`, real workers):
the calibrated streaming submission's known TTFT and ITL recovered; the bundled GPT-2 in each load
mode with CIs, an SLO-bounded rate and a sweep; and hostile or broken streamers ending as failed
runs that name their reason and request."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

GEN = ["--scenario", "generate", "--profile", "cpu-1core", "--no-meters", "--warmup", "1", "--max-duration", "60"]


def cli(*args, db):
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, "--db", db], capture_output=True,
                          text=True)


def run_json(folder, *args, db):
    p = cli("run", str(folder), *GEN, *args, "--json", db=db)
    return p, (json.loads(p.stdout) if p.stdout.strip().startswith("{") else None)


def test_the_calibrated_streamer_is_recovered(examples, sqlite_url):
    p, doc = run_json(examples["calibrated-stream-command"], "--max-new-tokens", "6", "--min-queries", "8",
                      db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", p.stderr
    m = doc["metrics"]
    cost = json.loads((examples["calibrated-stream-command"] / "cost.json").read_text())
    # true value, plus at most 2% and 2 ms of harness round trip (benchmarks/generate_calibration.py measures it)
    for name, true in (("ttft_p50_ms", cost["ttft_ms"]), ("itl_p50_ms", cost["itl_ms"]), ("tpot_ms", cost["itl_ms"])):
        v = m[name]
        assert true <= v["value"] <= true * 1.02 + 2.0, (name, v)
        assert v["ci_low"] <= v["value"] <= v["ci_high"] and v["n"] >= 8, (name, v)
    assert m["itl_p50_ms"]["n"] == 8 * 5  # every gap of every request


@pytest.mark.parametrize("mode", [[], ["--concurrency", "4"], ["--rate", "30"]])
def test_the_bundled_causal_lm_in_each_load_mode(examples, sqlite_url, mode):
    p, doc = run_json(examples["gpt2-tiny-transformers"], "--max-new-tokens", "8", "--ignore-eos",
                      "--min-queries", "12", *mode, db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", p.stderr
    m = doc["metrics"]
    for name in ("ttft_p50_ms", "itl_p50_ms", "tpot_ms", "output_tokens_per_s", "requests_per_s",
                 "prefill_tokens_per_s"):
        v = m[name]
        assert v["value"] > 0 and v["ci_low"] <= v["value"] <= v["ci_high"], (name, v)
    assert m["itl_p50_ms"]["n"] == 12 * 7  # ignore_eos: 8 tokens each, 7 gaps


def test_an_slo_bounded_rate_and_a_sweep_are_stored(examples, sqlite_url):
    p, doc = run_json(examples["gpt2-tiny-transformers"], "--max-new-tokens", "6", "--min-queries", "10",
                      "--ttft-slo-ms", "1000", "--tpot-slo-ms", "100", "--sweep", db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", p.stderr
    assert doc["metrics"]["max_rate_within_slo"]["value"] > 0
    p, doc = run_json(examples["gpt2-tiny-transformers"], "--max-new-tokens", "4", "--min-queries", "8",
                      "--ttft-slo-ms", "0.001", "--tpot-slo-ms", "0.001", db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", p.stderr  # a result, not a crash
    v = doc["metrics"]["max_rate_within_slo"]
    assert v["value"] is None and "SLO not met at any rate" in (v.get("note") or json.dumps(v))


STREAMER = """
import json, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    rid = req["id"]
"""

BAD = {
    "never-streams": ("out(rid, outputs=['x'], output_tokens=0)", "without streaming a token"),
    "after-final": ("out(rid, token='a'); out(rid, outputs=['a'], output_tokens=1); out(rid, token='b')",
                    "after its final answer"),
    "count-mismatch": ("out(rid, token='a'); out(rid, outputs=['a'], output_tokens=3)", "says 3 output tokens but 1"),
    "wrong-id": ("out(rid + 1000, token='a')", "never sent"),
    "absurd-count": ("out(rid, token='a'); out(rid, outputs=['a'], output_tokens=-7)", "'output_tokens' must be"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_broken_streamer_fails_its_run_naming_the_reason(examples, sqlite_url, tmp_path, name):
    body, needle = BAD[name]
    folder = tmp_path / name
    shutil.copytree(examples["calibrated-stream-command"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (folder / "submission.yaml").read_text().replace("name: calibrated-stream-command", f"name: {name}")
    (folder / "submission.yaml").write_text(text)
    helper = "def out(rid, **kw):\n    print(json.dumps({'id': rid, **kw}), flush=True)\n"
    (folder / "serve.py").write_text(helper + textwrap.dedent(STREAMER) + textwrap.indent(body, "    ") + "\n")
    p, doc = run_json(folder, "--max-new-tokens", "4", "--min-queries", "4", db=sqlite_url)
    assert p.returncode != 0 and doc is not None and doc["status"] == "failed", (p.stdout, p.stderr)
    assert needle in doc["error"] and f"'{name}'" in doc["error"], doc["error"]
    assert "request" in doc["error"]
    r = cli("results", "--json", db=sqlite_url)
    assert r.returncode == 0 and '"running"' not in r.stdout  # never left running
