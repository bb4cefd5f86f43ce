"""Write cost.json for the calibrated streaming command model. Run: python build.py [--ttft-ms 50 --itl-ms 10]"""
import argparse
import json
from pathlib import Path

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--ttft-ms", type=float, default=50.0, help="busy-wait before the first token, ms")
parser.add_argument("--itl-ms", type=float, default=10.0, help="busy-wait before each later token, ms")
args = parser.parse_args()
(here / "cost.json").write_text(json.dumps({"ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms}) + "\n")
print(f"wrote {here / 'cost.json'} (TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms)")
