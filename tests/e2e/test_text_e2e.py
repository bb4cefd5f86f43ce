"""The bundled transformer from the CLI: all-MiniLM-L6-v2 (real weights) with its trained head on
afinn-sentiment, one `heptathlon run --json`: accuracy, tokens/s, words/s, tokenize_ms, and the
per-language fairness gap, each with its CI; then `results` lists it like any other run."""

import json
import subprocess
import sys

QUICK = ["--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2", "--no-meters"]


def cli(*args, db):
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, "--db", db], capture_output=True,
                          text=True)


def test_minilm_example_runs_from_the_cli_with_text_metrics(examples, sqlite_url):
    p = cli("run", str(examples["minilm-afinn-transformers"]), "--profile", "cpu-1core", "--scenario", "fixed_batch",
            "--batch-size", "8", "--json", *QUICK, db=sqlite_url)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "succeeded", doc["error"]
    m = doc["metrics"]
    assert 0.65 < m["accuracy"]["value"] < 0.85  # real weights and a trained head: about 0.72
    for name in ("tokens_per_s", "words_per_s", "tokenize_ms", "fairness_gap"):
        v = m[name]
        assert v["value"] > 0 and v["ci_low"] <= v["value"] <= v["ci_high"], (name, v)
    assert m["tokens_per_s"]["value"] > m["words_per_s"]["value"]  # WordPiece: more tokens than words
    assert m["params"]["value"] == 22_713_986 and m["params"]["method"] == "artifact:torch-parameters"
    r = cli("results", "--json", db=sqlite_url)
    assert r.returncode == 0, r.stderr
    assert "minilm-afinn-transformers" in r.stdout
