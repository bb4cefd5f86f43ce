"""Reproduce docs/fairness.md's tables: run group-task submissions on fp32, bf16 and int8 CPU
profiles and print hardware-induced disparity against the fp32 reference as Markdown.

    .venv/bin/python benchmarks/fairness_report.py [--db URL]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBMISSIONS = ["arrests-mlp-torch", "hearts-mlp-torch"]
PROFILES = ["cpu-1core", "cpu-1core-bf16", "cpu-1core-int8"]


def cli(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args], capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None)
    a = ap.parse_args()
    db = ["--db", a.db] if a.db else []
    for s in SUBMISSIONS:
        for p in PROFILES:
            cli("run", str(REPO / "submissions" / s), "--profile", p, "--min-queries", "50", "--min-duration", "0",
                "--no-meters", "--json", *db)
    for s in SUBMISSIONS:
        doc = json.loads(cli("fairness", s, "--json", *db))
        print(f"\n### {s} (task {doc['task']}, reference {doc['reference']})\n")
        print("| attribute | profile | hw_disparity [95% CI] | ξ [95% CI] | groups: flip rate [95% CI], McNemar p | small groups |")
        print("|---|---|---|---|---|---|")
        for attr, items in doc["attributes"].items():
            for it in items:
                summ = {r["quantity"]: f"{r['value']} {r['ci']}" for r in it["summary"]}
                groups = "; ".join(f"{g['group']}: {g['flip']}, p={g['mcnemar_p']}" for g in it["groups"])
                small = ", ".join(g["group"] for g in it["groups"] if g["small"] not in ("", "no", "False")) or "—"
                print(f"| {attr} | {it['profile']} | {summ['hw_disparity']} | {summ['xi']} | {groups} | {small} |")


if __name__ == "__main__":
    main()
