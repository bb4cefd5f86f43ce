"""Write cost.json for the calibrated busy-wait command model. Run: python build.py [--cost-us 1000]"""
import argparse
import json
from pathlib import Path

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--cost-us", type=float, default=1000.0, help="busy-wait per request, microseconds")
args = parser.parse_args()
(here / "cost.json").write_text(json.dumps({"cost_us": args.cost_us}) + "\n")
print(f"wrote {here / 'cost.json'} (cost {args.cost_us:g} us per request)")
