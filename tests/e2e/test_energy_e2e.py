"""Energy through a real run: on this machine (no RAPL, no GPU) it is an estimate, labelled so."""

import json
import subprocess
import sys

QUICK = ["--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2"]


def run_json(folder, db, *extra):
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(folder), "--json", "--db", db, *QUICK, *extra],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_energy_is_labelled_estimate_or_counter_never_zero(examples, sqlite_url):
    doc = run_json(examples["arrests-mlp-onnx"], sqlite_url, "--idle-seconds", "0.5")
    m = doc["metrics"]
    for name in ("energy_gross_j", "energy_j", "energy_per_sample_j", "co2_g"):
        assert name in m
        v = m[name]
        if v["value"] is None:
            assert v["method"] == "unavailable" and v["note"]
        else:
            assert v["method"].startswith(("estimate:", "counter:", "sampled:"))
            if v["method"].startswith("estimate:"):
                assert "estimate" in v["note"]
    gross = m["energy_gross_j"]
    assert gross["value"] is None or gross["value"] > 0  # never 0 J as a stand-in for unknown
    assert m["energy_per_sample_j"]["n"] == m["throughput_sps"]["params"]["samples"] or m["energy_per_sample_j"]["value"] is None


def test_no_meters_switch(examples, sqlite_url):
    doc = run_json(examples["arrests-mlp-onnx"], sqlite_url, "--no-meters")
    e = doc["metrics"]["energy_j"]
    assert e["value"] is None and e["method"] == "unavailable" and "--no-meters" in e["note"]


def test_estimates_marked_in_results_table(examples, sqlite_url):
    run_json(examples["digits-cnn-onnx"], sqlite_url, "--idle-seconds", "0.5")
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "results", "--db", sqlite_url, "--rank-by",
                        "energy_per_sample_j"], capture_output=True, text=True)
    assert p.returncode == 0
    rows = json.loads(subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "results", "--json", "--db", sqlite_url,
                                      "--rank-by", "energy_per_sample_j"], capture_output=True, text=True).stdout)
    est = rows[0]["metrics"]["energy_per_sample_j"]["method"].startswith("estimate:")
    if est:
        assert "(est.)" in p.stdout
        assert rows[0]["rank"] == "—"  # an estimate is never ranked
