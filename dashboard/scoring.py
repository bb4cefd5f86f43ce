"""Pure arithmetic behind the leaderboard: metric order, CI-tie ranks, the heptathlon score, Pareto fronts.

No Streamlit, no database: plain values in, frozen dataclasses and dicts out, so that every rule
the pages show can be tested directly (tests/dashboard/test_scoring.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from heptathlon.bench.metrics import HEADLINE, METRICS, is_estimate
from heptathlon.bench.ranking import Ranked, rank_with_ties

# One metric per event of the seven (DESIGN.md), weight 1 each: the default heptathlon score.
DEFAULT_WEIGHTS: dict[str, float] = {
    "accuracy": 1.0,              # quality
    "latency_p50_ms": 1.0,        # latency
    "throughput_sps": 1.0,        # throughput
    "peak_rss_mb": 1.0,           # memory
    "energy_per_sample_j": 1.0,   # energy
    "framework_tax": 1.0,         # framework tax
    "hw_disparity": 1.0,          # hardware-induced fairness disparity
}

SCORE_FORMULA = r"""
**Heptathlon score** (0–100, higher is better), computed within the group shown (one task, profile,
scenario and machine class):

$$\text{score}(e) = 100 \cdot \frac{\sum_m w_m\, s_m(e)}{\sum_m w_m}, \qquad
s_m(e) = \frac{N_m - \bar r_m(e)}{N_m - 1}, \qquad \bar r_m(e) = \tfrac{1}{2}\,(\text{best}_m(e) + \text{worst}_m(e))$$

- $[\text{best}_m, \text{worst}_m]$ is the entry's tie-aware rank range on metric $m$ among the $N_m$ entries
  with a **measured** value: entries whose 95% CIs overlap share a range (`heptathlon.bench.ranking`), so a
  difference inside the noise moves nobody. $s_m = 1$ when only one entry has the metric.
- The direction of each metric comes from the metric registry (`lower_is_better`).
- Estimated values (`estimate:*`) count as not measured here: they are never ranked against measurements.
- A weighted metric that no entry in the group has measured is dropped from the sum (listed below the
  table). An entry that lacks a measured value of a metric that others have gets no score.
- Default weights: 1 for one metric per event (accuracy, p50 latency, throughput, peak RSS,
  energy per sample, framework tax, hardware disparity), 0 for the rest.
"""


@dataclass(frozen=True)
class Value:
    """One stored value as the dashboard sees it."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""
    n: int | None = None
    unit: str = ""
    note: str | None = None

    @property
    def measured(self) -> bool:
        """A real number obtained by measurement (not missing, not unavailable, not an estimate)."""
        return self.value is not None and _finite(self.value) and not is_estimate(self.method or "")

    @property
    def estimated(self) -> bool:
        return self.value is not None and _finite(self.value) and is_estimate(self.method or "")


def _finite(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and math.isfinite(x)


def _opt(x: float | None) -> float | None:
    return x if _finite(x) else None


def ordered_metrics(names: Iterable[str]) -> list[str]:
    """Headline metrics first (in HEADLINE order), then registry order, then unknown names A-Z."""
    names = set(names)
    registry = list(METRICS)
    head = [m for m in HEADLINE if m in names]
    rest = [m for m in registry if m in names and m not in head]
    unknown = sorted(n for n in names if n not in METRICS)
    return head + rest + unknown


def lower_is_better(metric: str) -> bool | None:
    spec = METRICS.get(metric)
    return None if spec is None else spec.lower_is_better


def rank_metric(entries: Mapping[str, Mapping[str, Value]], metric: str) -> dict[str, Ranked]:
    """Tie-aware ranks of the entries with a measured value of ``metric``; others are absent."""
    direction = lower_is_better(metric)
    if direction is None:
        return {}
    rankable = [(key, v.value, _opt(v.ci_low), _opt(v.ci_high)) for key, vals in entries.items()
                if (v := vals.get(metric)) is not None and v.measured]
    return {r.key: r for r in rank_with_ties(rankable, lower_is_better=direction)}


@dataclass(frozen=True)
class Score:
    key: str
    score: float | None  # None: missing a measured value of a weighted metric
    parts: dict[str, float] = field(default_factory=dict)  # metric -> s_m in [0, 1]
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoreTable:
    scores: dict[str, Score]
    used: dict[str, float]  # metric -> weight, metrics that entered the score
    dropped: tuple[str, ...]  # weighted metrics no entry has measured


def heptathlon_scores(entries: Mapping[str, Mapping[str, Value]], weights: Mapping[str, float]) -> ScoreTable:
    """The composite score of SCORE_FORMULA for each entry (see there for every rule)."""
    used: dict[str, float] = {}
    dropped: list[str] = []
    ranks: dict[str, dict[str, Ranked]] = {}
    for metric, w in weights.items():
        if not w or w <= 0 or lower_is_better(metric) is None:
            continue
        r = rank_metric(entries, metric)
        if r:
            used[metric] = float(w)
            ranks[metric] = r
        else:
            dropped.append(metric)
    total = sum(used.values())
    scores = {}
    for key in entries:
        parts, missing = {}, []
        for metric in used:
            rk = ranks[metric].get(key)
            if rk is None:
                missing.append(metric)
                continue
            n = len(ranks[metric])
            mid = (rk.best + rk.worst) / 2
            parts[metric] = 1.0 if n == 1 else (n - mid) / (n - 1)
        if missing or not used:
            scores[key] = Score(key, None, parts, tuple(missing))
        else:
            scores[key] = Score(key, 100.0 * sum(used[m] * parts[m] for m in used) / total, parts)
    return ScoreTable(scores, used, tuple(dropped))


def score_ranks(scores: Mapping[str, Score]) -> dict[str, str]:
    """Rank labels by score (higher first); equal scores share a rank, unscored entries get none."""
    scored = sorted(((s.score, k) for k, s in scores.items() if s.score is not None), key=lambda t: -t[0])
    out, i = {}, 0
    while i < len(scored):
        j = i
        while j + 1 < len(scored) and math.isclose(scored[j + 1][0], scored[i][0], abs_tol=1e-9):
            j += 1
        label = str(i + 1) if i == j else f"{i + 1}–{j + 1}"
        for _, k in scored[i:j + 1]:
            out[k] = label
        i = j + 1
    return out


def pareto_front(points: Sequence[tuple[str, float, float]], *, x_lower_is_better: bool = True,
                 y_lower_is_better: bool = False) -> set[str]:
    """Keys of the non-dominated (key, x, y) points.

    A point is dominated when another is at least as good on both axes and strictly better on one.
    Duplicated points are all kept on the front.
    """
    sx = 1.0 if x_lower_is_better else -1.0
    sy = 1.0 if y_lower_is_better else -1.0
    pts = [(k, sx * x, sy * y) for k, x, y in points if _finite(x) and _finite(y)]
    front = set()
    for k, x, y in pts:
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for _, x2, y2 in pts):
            front.add(k)
    return front


def format_value(value: float | None, unit: str = "") -> str:
    """Short human form of a value: counts with separators, big numbers without decimals, else 4 digits."""
    if not _finite(value):
        return "not measured"
    v = float(value)
    if unit == "count":
        return f"{v:,.0f}"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    if unit == "fraction":
        return f"{v:.3f}"
    return f"{v:.4g}"
