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

# The formula is rendered with st.latex (KaTeX); the rules below it are plain Markdown, so that
# no inline math can fail to parse and print as raw red LaTeX.
SCORE_LATEX = (r"\text{score}(e) = 100 \cdot \frac{\sum_m w_m\, s_m(e)}{\sum_m w_m}, \qquad "
               r"s_m(e) = \frac{N_m - \bar r_m(e)}{N_m - 1}, \qquad "
               r"\bar r_m(e) = \frac{\text{best}_m(e) + \text{worst}_m(e)}{2}")

SCORE_RULES = """
**Heptathlon score** (0–100, higher is better), computed within the group shown (one task, profile,
scenario and machine class):

- [best, worst] is the entry's tie-aware rank range on metric *m* among the *N* entries with a
  **measured** value: entries whose 95% CIs overlap share a range (`heptathlon.bench.ranking`), so a
  difference inside the noise moves nobody.
- The direction of each metric comes from the metric registry (`lower_is_better`).
- Estimated values (`estimate:*`) count as not measured here: they are never ranked against measurements.
- A weighted metric that no entry in the group has measured is dropped from the sum (listed below the
  table). An entry that lacks a measured value of a metric that others have gets no score.
- **A score needs a comparison:** ranks mean something only against another entry, so when fewer
  than two entries of the group can be scored, none is (a lone entry shows —, not 100).
- Default weights: 1 for one metric per event (accuracy, p50 latency, throughput, peak RSS,
  energy per sample, framework tax, hardware disparity), 0 for the rest.
"""
SCORE_FORMULA = SCORE_RULES  # the name older callers import


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
    reason: str = ""  # why there is no score, for the tooltip


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
            reason = (", ".join(missing) + " not measured") if missing else "no weighted metric measured"
            scores[key] = Score(key, None, parts, tuple(missing), reason)
        else:
            scores[key] = Score(key, 100.0 * sum(used[m] * parts[m] for m in used) / total, parts)
    scored = [k for k, sc in scores.items() if sc.score is not None]
    if len(scored) < 2:  # a lone entry would score 100 against nobody (SCORE_RULES)
        for k in scored:
            scores[k] = Score(k, None, scores[k].parts, (), "the only entry that can be scored in this group: "
                                                            "nothing to compare it against")
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
    """Keys of the non-dominated (key, x, y) points, on point estimates alone.

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


def _interval(v: Value, sign: float) -> tuple[float, float] | None:
    """(low, high) of a value's 95% CI in "lower is better" orientation; the point without a CI."""
    if not _finite(v.value):
        return None
    lo = v.ci_low if _finite(v.ci_low) else v.value
    hi = v.ci_high if _finite(v.ci_high) else v.value
    a, b = sorted((sign * lo, sign * hi))
    return min(a, sign * v.value), max(b, sign * v.value)


def pareto_front_ci(points: Sequence[tuple[str, Value, Value]], *, x_lower_is_better: bool = True,
                    y_lower_is_better: bool = False) -> set[str]:
    """Keys of the (key, x, y) entries that no other entry dominates **beyond the 95% CIs**.

    Entry q dominates p when q is better than p beyond the CIs on at least one axis (q's whole
    interval is better than p's whole interval) and not worse beyond the CIs on the other (the
    intervals overlap, or q is better). A difference inside the noise decides nothing, so entries
    whose CIs overlap on both axes are all on the frontier. A value without a CI is its point.
    """
    sx = 1.0 if x_lower_is_better else -1.0
    sy = 1.0 if y_lower_is_better else -1.0
    iv = {}
    for k, x, y in points:
        ix, iy = _interval(x, sx), _interval(y, sy)
        if ix is not None and iy is not None:
            iv[k] = (ix, iy)

    def better(a: tuple[float, float], b: tuple[float, float]) -> bool:  # a clearly below b
        return a[1] < b[0]

    def dominates(q, p) -> bool:
        (qx, qy), (px, py) = iv[q], iv[p]
        return ((better(qx, px) or better(qy, py)) and not better(px, qx) and not better(py, qy))

    return {p for p in iv if not any(dominates(q, p) for q in iv if q != p)}


def difference_ci(a: Value, b: Value) -> tuple[float | None, float | None, float | None]:
    """a − b with an approximate 95% CI from the two CIs (MOVER, Zou & Donner 2008).

    L = d − √((a − a_lo)² + (b_hi − b)²), U = d + √((a_hi − a)² + (b − b_lo)²); the two runs are
    independent samples. Without both CIs only the point difference is returned.
    """
    if not (_finite(a.value) and _finite(b.value)):
        return None, None, None
    d = float(a.value) - float(b.value)
    if not all(_finite(x) for x in (a.ci_low, a.ci_high, b.ci_low, b.ci_high)):
        return d, None, None
    lo = d - math.hypot(a.value - a.ci_low, b.ci_high - b.value)
    hi = d + math.hypot(a.ci_high - a.value, b.value - b.ci_low)
    return d, lo, hi


def format_p(p: float | None) -> str:
    """A p-value as people read it: ``p = 0.032``, ``p < 0.0001``; never ``0.000``."""
    if not _finite(p):
        return "p: —"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def format_signed(value: float | None, unit: str = "", *, ref: float | None = None) -> str:
    """A difference with its sign: ``+1.2 ms``, ``−350 µs``."""
    if not _finite(value):
        return "—"
    text = format_si(abs(value), unit, ref=ref if _finite(ref) else abs(value))
    return ("+" if value > 0 else "−" if value < 0 else "±") + text


_SI_UNITS = {"ms": ("s", 1e-3), "us": ("s", 1e-6), "s": ("s", 1.0), "J": ("J", 1.0), "g": ("g", 1.0),
             "W": ("W", 1.0), "MB": ("B", 1e6)}
_PREFIXES = [(1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")]
_NO_PREFIX_ABOVE = {"s": 1.0}  # no kiloseconds
_NO_PREFIX_BELOW = {"B": 1.0}  # no millibytes


def format_si(value: float | None, unit: str = "", *, ref: float | None = None) -> str:
    """A value with its unit, scaled to an SI prefix: ``7.63 µs`` for 0.007629 ms, ``12.4 µJ`` for
    1.241e-05 J, ``1.2 GB`` for 1200 MB. ``ref`` picks the prefix (the value itself by default), so a
    CI prints in the prefix of its point estimate. Counts get separators, fractions three decimals."""
    if not _finite(value):
        return "not measured"
    v = float(value)
    if unit in _SI_UNITS:
        base, factor = _SI_UNITS[unit]
        x = v * factor
        r = abs((ref if _finite(ref) else v) * factor)
        top, bottom = _NO_PREFIX_ABOVE.get(base, 1e9), _NO_PREFIX_BELOW.get(base, 1e-9)
        scale, sym = next(((p, s) for p, s in _PREFIXES if p <= top and (r >= p or p <= bottom)), (1.0, ""))
        if r == 0:
            scale, sym = 1.0, ""
        scaled = x / scale
        text = f"{scaled:,.0f}" if abs(scaled) >= 1000 else f"{float(f'{scaled:.3g}'):g}"
        return f"{text} {sym}{base}"
    if unit == "count":
        return f"{v:,.0f}"
    if unit == "fraction":
        return f"{v:.3f}"
    num = f"{v:,.0f}" if abs(v) >= 1000 else f"{float(f'{v:.3g}'):g}"
    return f"{num} {unit}".strip()


def format_value(value: float | None, unit: str = "") -> str:
    """Short human form of a value without its unit: counts with separators, big numbers without
    decimals, else 4 digits (format_si adds the unit with an SI prefix)."""
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
