"""Build weights.pt: the hearts MLP's state_dict for model.py's build(). Run: python build.py"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, train_arrests_mlp  # noqa: E402

model = train_arrests_mlp("hearts")
torch.save(model.net.state_dict(), here / "weights.pt")
print(f"wrote {here / 'weights.pt'} (test accuracy {accuracy(model, 'hearts'):.3f})")
