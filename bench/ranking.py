"""Tie-aware ranks: entries whose 95% CIs overlap share a rank range such as "1–2"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Ranked:
    key: str
    best: int  # best rank this entry could hold
    worst: int  # worst rank this entry could hold

    @property
    def label(self) -> str:
        return str(self.best) if self.best == self.worst else f"{self.best}–{self.worst}"


def rank_with_ties(entries: Sequence[tuple[str, float, float | None, float | None]], *,
                   lower_is_better: bool = True) -> list[Ranked]:
    """Rank (key, value, ci_low, ci_high) entries; overlapping CIs are ties.

    An entry's best rank is 1 + the number of entries whose CI lies entirely better than its
    own; its worst rank is the count of entries not entirely worse. Both are independent of
    input order. A missing CI is treated as the point value.
    """
    iv = []
    for key, v, lo, hi in entries:
        lo = v if lo is None else lo
        hi = v if hi is None else hi
        if not lower_is_better:  # flip so that smaller is better everywhere below
            v, lo, hi = -v, -hi, -lo
        iv.append((key, v, lo, hi))
    out = []
    for key, v, lo, hi in iv:
        better = sum(1 for k2, v2, lo2, hi2 in iv if k2 != key and hi2 < lo)
        worse = sum(1 for k2, v2, lo2, hi2 in iv if k2 != key and lo2 > hi)
        out.append(Ranked(key, 1 + better, len(iv) - worse))
    order = {k: (v, k) for k, v, _, _ in iv}
    return sorted(out, key=lambda r: (r.best, order[r.key]))
