"""A calibrated workload: forward busy-waits ``cost_us`` microseconds, then returns zeros.

The cost is a buffer, so it travels in weights.pt (build.py --cost-us N) and the harness's
ordinary torch adapter loads it. A busy-wait on the wall clock, not a sleep: it ends on time
to within a timer read, and a preemption inside it does not make it longer.
"""
import time

import torch
from torch import nn


class BusyWait(nn.Module):
    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.register_buffer("cost_us", torch.zeros((), dtype=torch.float64))
        self.n_classes = n_classes
        self._cost_ns = 0
        self._outputs: dict[int, torch.Tensor] = {}  # one zeros tensor per batch size, made once
        self.register_load_state_dict_post_hook(lambda module, keys: module._refresh())

    def _refresh(self) -> None:
        self._cost_ns = int(float(self.cost_us) * 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Every torch call happens before the wait: after a millisecond of spinning even a slice
        # runs cache-cold (about 6 us instead of 1 us here), which would blur the known cost.
        n = len(x)
        out = self._outputs.get(n)
        if out is None:
            out = self._outputs[n] = torch.zeros(n, self.n_classes)
        pc = time.perf_counter_ns
        end = pc() + self._cost_ns
        while pc() < end:
            pass
        return out


def build() -> nn.Module:
    return BusyWait()
