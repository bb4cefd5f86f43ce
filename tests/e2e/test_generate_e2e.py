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
    # A busy-wait cannot end early, so each timer reads at least its true cost; how closely it
    # recovers it is a speed question for benchmarks/generate_calibration.py (no wall-clock bound here).
    for name, true in (("ttft_p50_ms", cost["ttft_ms"]), ("itl_p50_ms", cost["itl_ms"]), ("tpot_ms", cost["itl_ms"])):
        v = m[name]
        assert v["value"] >= true, (name, v)
        assert v["ci_low"] <= v["value"] <= v["ci_high"] and v["n"] >= 8, (name, v)
    # the first token waits ttft_ms, the others itl_ms: a timer that mixed them up would break this
    assert m["ttft_p50_ms"]["value"] - cost["ttft_ms"] < m["ttft_p50_ms"]["value"] - m["itl_p50_ms"]["value"]
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


def test_fidelity_against_the_fp32_reference_per_language(examples, sqlite_url):
    opts = ["--max-new-tokens", "8", "--ignore-eos", "--min-queries", "16"]
    p, doc = run_json(examples["gpt2-tiny-transformers"], *opts, db=sqlite_url)  # cpu-1core: the reference
    assert doc["status"] == "succeeded", p.stderr
    assert doc["metrics"]["generation_exact_match"]["value"] is None  # the reference itself
    ref_id = doc["run_id"]
    p = cli("run", str(examples["gpt2-tiny-transformers"]), *[a if a != "cpu-1core" else "cpu-1core-bf16" for a in GEN],
            *opts, "--json", db=sqlite_url)
    doc = json.loads(p.stdout)
    assert doc["status"] == "succeeded", p.stderr
    m = doc["metrics"]["generation_exact_match"]
    assert 0 <= m["value"] <= 1 and m["n"] == 16 and m["method"].startswith("quality:") and ref_id[:8] in m["note"]
    d = doc["metrics"]["generation_first_divergence"]
    assert 0 <= d["value"] <= 8
    import sqlite3

    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    rows = con.execute("select \"group\", n from group_metric where run_id = ? and metric = 'generation_exact_match'",
                       (doc["run_id"],)).fetchall()
    assert {g for g, _ in rows} == {"en", "da"} and sum(n for _, n in rows) == 16


def test_bleu_and_chrf_where_the_task_has_references(examples, sqlite_url, tmp_path):
    folder = tmp_path / "stream-refs"
    shutil.copytree(examples["calibrated-stream-command"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    rows = [{"prompt": f"say tok {i}", "label": 0, "target": "tok tok tok tok" if i % 2 else "tik tak"} for i in range(8)]
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.yaml").write_text("name: stream-refs\ndata: eval.jsonl\ninputs: [prompt]\ninput_type: text\n"
                                      "label: label\nreferences: [target]\n")
    (folder / "submission.yaml").write_text((folder / "submission.yaml").read_text()
                                            .replace("name: calibrated-stream-command", "name: stream-refs")
                                            .replace("task: prompts-en-da", "task: task.yaml"))
    (folder / "cost.json").write_text('{"ttft_ms": 1, "itl_ms": 1}')
    p, doc = run_json(folder, "--max-new-tokens", "4", "--min-queries", "8", db=sqlite_url)
    assert doc is not None and doc["status"] == "succeeded", p.stderr
    bleu, chrf = doc["metrics"]["bleu"], doc["metrics"]["chrf"]
    assert 0 < bleu["value"] < 100 and 0 < chrf["value"] < 100  # half the references match the output exactly
    assert "nrefs:1" in bleu["note"]


def test_results_rank_generate_runs_by_ttft_within_one_load(examples, sqlite_url, tmp_path):
    opts = ["--max-new-tokens", "4", "--min-queries", "8"]
    for name in ("calibrated-stream-command", "gpt2-tiny-transformers"):
        p, doc = run_json(examples[name], *opts, db=sqlite_url)
        assert doc["status"] == "succeeded", p.stderr
    p, doc = run_json(examples["gpt2-tiny-transformers"], *opts, "--concurrency", "2", db=sqlite_url)
    r = cli("results", "--json", "--include-contended", db=sqlite_url)
    assert r.returncode == 0, r.stderr
    rows = [x for x in json.loads(r.stdout) if x["scenario"] == "generate"]
    loads = {x["load"] for x in rows}
    assert loads == {"single stream · 4 new tokens", "concurrency 2 · 4 new tokens"}, loads
    single = sorted((x for x in rows if x["load"].startswith("single")), key=lambda x: x["rank"])
    # the tiny GPT-2 answers in milliseconds, the calibrated streamer waits 50 ms for its first token
    assert [x["submission"] for x in single] == ["gpt2-tiny-transformers", "calibrated-stream-command"]
    assert single[0]["rank"] == "1" and "ttft_p50_ms" in single[0]["metrics"]
    table = cli("results", db=sqlite_url)
    assert "TTFT p50 ms" in table.stdout and "concurrency 2 · 4 new tokens" in table.stdout
