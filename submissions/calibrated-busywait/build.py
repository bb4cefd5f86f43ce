"""Build weights.pt for the calibrated busy-wait model. Run: python build.py [--cost-us 1000]"""
import argparse
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--cost-us", type=float, default=1000.0, help="busy-wait per forward call, microseconds")
args = parser.parse_args()
torch.save({"cost_us": torch.tensor(args.cost_us, dtype=torch.float64)}, here / "weights.pt")
print(f"wrote {here / 'weights.pt'} (cost {args.cost_us:g} us per call)")
