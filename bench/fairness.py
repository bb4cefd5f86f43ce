"""Hardware-induced fairness disparity: per-group quality and how it shifts across profiles.

Pure core: arrays in, frozen dataclasses out, no I/O. The definitions follow DESIGN.md,
"Hardware-induced fairness disparity" (after Nelaturu et al. 2024, "On the Fairness Impacts
of Hardware Selection"): the weights are fixed, the hardware and numerics change.

    acc_a(h)          accuracy of group a on profile h
    gap(h)            max_a acc_a(h) - min_a acc_a(h)
    delta_a(h)        acc_a(h) - acc_a(ref)
    hw_disparity(h)   gap(h) - gap(ref)
    xi(h)             max over a, a' of |delta_a(h) - delta_a'(h)|
    flip_a(h)         share of group a's examples whose prediction differs from ref

Where scores exist the same quantities are computed on the per-group mean log loss.

Conventions:
- Group labels are strings. A missing value (None, NaN, pd.NA) becomes the group
  ``"unknown"``; several attributes combine into an intersection named ``"colour×sex"``
  whose groups are named ``"Black×Female"``.
- Groups with fewer than ``min_group_size`` examples are flagged ``small``, never dropped.
- Point estimates come from fairlearn's ``MetricFrame``. 95% CIs come from a stratified
  percentile bootstrap over examples; across two profiles it is paired (the same resampled
  indices are applied to both profiles' predictions).
- A task without group labels raises :class:`NoGroupsError`; the caller records "no
  fairness numbers" rather than a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.special import softmax
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score

from heptathlon.bench.errors import FairnessError
from heptathlon.bench.metrics import MetricValue

UNKNOWN_GROUP = "unknown"
INTERSECTION_SEP = "×"
DEFAULT_MIN_GROUP_SIZE = 30
DEFAULT_N_RESAMPLES = 2000
DEFAULT_CONFIDENCE_LEVEL = 0.95
METHOD = "derived:fairlearn-metricframe"
CI_METHOD = "stratified percentile bootstrap over examples"
PAIRED_CI_METHOD = "paired stratified percentile bootstrap over examples"

# Rows of a resample index block; bounds the memory of one vectorised resample
# (about 4 MB of indices, times the number of per-example columns in floats).
_MAX_RESAMPLE_CELLS = 1 << 19
# Rows whose probabilities sum to 1 within this are probabilities (fp16 outputs drift by ~1e-3).
_PROBABILITY_SUM_ATOL = 1e-3


class NoGroupsError(FairnessError):
    """The task has no group labels, so it has no fairness numbers.

    Raised by every public function here when ``groups``/``group_labels`` is None or has no
    columns. The runner should catch it and record the fairness metrics as unavailable
    (``MetricValue.unavailable(..., reason=str(err))``) instead of failing the run.
    """

    def __init__(self, task: str | None = None) -> None:
        self.task = task
        name = f"task {task!r}" if task else "this task"
        super().__init__(f"{name} has no group labels; no fairness numbers")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class GroupMetric:
    """Quality of one group on one profile (maps onto the ``group_metric`` table)."""

    attribute: str  # "colour", or an intersection "colour×sex"
    group: str  # "Black", "unknown", or "Black×Female"
    metric: str  # "accuracy" | "log_loss"
    value: float
    n: int
    ci_low: float
    ci_high: float
    small: bool  # n < min_group_size: flagged, still reported


@dataclass(frozen=True)
class GroupDisparity:
    """How one group's quality moves from the reference profile to profile h."""

    group: str
    n: int
    small: bool
    acc_ref: float
    acc_h: float
    delta: Estimate  # acc_a(h) - acc_a(ref)
    flip: Estimate  # share of the group's predictions that differ from ref
    mcnemar_p: float  # exact McNemar test that the group's accuracy changed; 1.0 with no discordant pairs
    ref_only_correct: int  # discordant pairs: right on ref, wrong on h
    h_only_correct: int  # discordant pairs: wrong on ref, right on h
    loss_ref: float | None = None
    loss_h: float | None = None
    loss_delta: Estimate | None = None  # loss_a(h) - loss_a(ref)


@dataclass(frozen=True)
class DisparityReport:
    """Per-group shifts and the overall disparity of profile h against the reference profile."""

    attribute: str
    n: int
    min_group_size: int
    groups: tuple[GroupDisparity, ...]
    gap_ref: MetricValue  # fairness_gap on the reference profile
    gap_h: MetricValue  # fairness_gap on profile h
    hw_disparity: MetricValue  # gap(h) - gap(ref)
    xi: Estimate  # max |delta_a - delta_a'|
    loss_gap_ref: Estimate | None = None
    loss_gap_h: Estimate | None = None
    loss_hw_disparity: Estimate | None = None
    loss_xi: Estimate | None = None
    n_resamples: int = DEFAULT_N_RESAMPLES
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL
    seed: int = 0

    @property
    def small_groups(self) -> tuple[str, ...]:
        return tuple(g.group for g in self.groups if g.small)


# ---------------------------------------------------------------------------- public API


def label_groups(groups: Any, *, attributes: Sequence[str] | None = None, task: str | None = None) -> tuple[str, np.ndarray]:
    """Turn group columns into (attribute name, one string label per example).

    A 1-D array or Series is one attribute; a DataFrame with several columns becomes their
    intersection ("colour×sex", labels "Black×Female"). Missing values become "unknown".
    """
    frame = _as_group_frame(groups, task)
    cols = _pick_attributes(frame, attributes)
    labels = [_clean_labels(frame[c]) for c in cols]
    if len(labels) == 1:
        return str(cols[0]), labels[0]
    joined = np.array([INTERSECTION_SEP.join(parts) for parts in zip(*labels)], dtype=object)
    return INTERSECTION_SEP.join(str(c) for c in cols), joined


def per_group_metrics(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    scores: Any = None,
    attributes: Sequence[str] | None = None,
    intersections: bool = True,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    *,
    classes: Sequence[Any] | None = None,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    task: str | None = None,
) -> list[GroupMetric]:
    """Accuracy (and mean log loss when ``scores`` are given) per group, with 95% CIs.

    One block of rows per attribute, then one for the intersection of all chosen attributes
    (when there are at least two and ``intersections`` is true). Groups are sorted by name.
    """
    frame = _as_group_frame(groups, task)
    cols = _pick_attributes(frame, attributes)
    y_true, y_pred = _check_pair(y_true, y_pred, "y_true", "y_pred")
    _check_length(frame, len(y_true), "groups")
    correct = (y_true == y_pred).astype(float)
    loss = None if scores is None else _per_example_log_loss(y_true, scores, classes)

    blocks: list[list[str]] = [[c] for c in cols]
    if intersections and len(cols) >= 2:
        blocks.append(list(cols))

    out: list[GroupMetric] = []
    for block in blocks:
        attribute, labels = label_groups(frame, attributes=block, task=task)
        names, codes = np.unique(labels, return_inverse=True)
        sizes = np.bincount(codes, minlength=len(names))
        # Point estimates from MetricFrame; per-example log loss goes in as y_pred.
        points = {"accuracy": _by_group(accuracy_score, y_true, y_pred, labels, names)}
        columns = [correct]
        if loss is not None:
            points["log_loss"] = _by_group(_mean_of_y_pred, y_true, loss, labels, names)
            columns.append(loss)
        reps = _stratified_replicates(np.vstack(columns), codes, len(names), n_resamples, np.random.default_rng(seed))
        for m_index, metric in enumerate(points):
            for g, name in enumerate(names):
                est = _estimate(points[metric][g], reps[g, m_index], confidence_level)
                out.append(GroupMetric(
                    attribute=attribute, group=str(name), metric=metric, value=est.value, n=int(sizes[g]),
                    ci_low=est.ci_low, ci_high=est.ci_high, small=bool(sizes[g] < min_group_size),
                ))
    return out


def fairness_gap(
    y_true: Any,
    y_pred: Any,
    group_labels: Any,
    *,
    attributes: Sequence[str] | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    task: str | None = None,
) -> MetricValue:
    """``fairness_gap``: max minus min group accuracy within one profile, with a 95% CI.

    ``group_labels`` is one label per example, or a DataFrame whose columns are intersected.
    """
    attribute, labels = label_groups(group_labels, attributes=attributes, task=task)
    y_true, y_pred = _check_pair(y_true, y_pred, "y_true", "y_pred")
    _check_length(labels, len(y_true), "group_labels")
    names, codes = np.unique(labels, return_inverse=True)
    sizes = np.bincount(codes, minlength=len(names))
    acc = _by_group(accuracy_score, y_true, y_pred, labels, names)
    reps = _stratified_replicates(
        (y_true == y_pred).astype(float)[None, :], codes, len(names), n_resamples, np.random.default_rng(seed)
    )[:, 0, :]
    est = _estimate(_spread(acc), _spread(reps), confidence_level)
    return MetricValue(
        name="fairness_gap", value=est.value, method=METHOD, n=len(y_true), ci_low=est.ci_low, ci_high=est.ci_high,
        note="only one group: the gap is 0 by definition" if len(names) == 1 else None,
        params=_gap_params(attribute, names, sizes, acc, min_group_size, n_resamples, seed, CI_METHOD),
    )


def compare_to_reference(
    y_true: Any,
    pred_ref: Any,
    pred_h: Any,
    group_labels: Any,
    *,
    scores_ref: Any = None,
    scores_h: Any = None,
    classes: Sequence[Any] | None = None,
    attributes: Sequence[str] | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    task: str | None = None,
) -> DisparityReport:
    """Per-group delta, flip rate and McNemar p, plus hw_disparity and xi, of profile h vs ref.

    Every CI comes from one paired bootstrap: each replicate resamples examples within each
    group and applies the same indices to both profiles' predictions (and scores).
    """
    attribute, labels = label_groups(group_labels, attributes=attributes, task=task)
    y_true, pred_ref = _check_pair(y_true, pred_ref, "y_true", "pred_ref")
    _, pred_h = _check_pair(y_true, pred_h, "y_true", "pred_h")
    _check_length(labels, len(y_true), "group_labels")
    if (scores_ref is None) != (scores_h is None):
        raise FairnessError("give both scores_ref and scores_h, or neither; per-group loss needs both profiles")

    names, codes = np.unique(labels, return_inverse=True)
    k = len(names)
    sizes = np.bincount(codes, minlength=k)
    c_ref = y_true == pred_ref
    c_h = y_true == pred_h
    flipped = pred_ref != pred_h

    acc_ref = _by_group(accuracy_score, y_true, pred_ref, labels, names)
    acc_h = _by_group(accuracy_score, y_true, pred_h, labels, names)
    # flip_a is 1 - agreement between the two profiles' predictions within group a.
    flip = 1.0 - _by_group(accuracy_score, pred_ref, pred_h, labels, names)
    columns = [c_ref.astype(float), c_h.astype(float), flipped.astype(float)]

    with_loss = scores_ref is not None
    if with_loss:
        loss_ref_ex = _per_example_log_loss(y_true, scores_ref, classes)
        loss_h_ex = _per_example_log_loss(y_true, scores_h, classes)
        loss_ref = _by_group(_mean_of_y_pred, y_true, loss_ref_ex, labels, names)
        loss_h = _by_group(_mean_of_y_pred, y_true, loss_h_ex, labels, names)
        columns += [loss_ref_ex, loss_h_ex]

    reps = _stratified_replicates(np.vstack(columns), codes, k, n_resamples, np.random.default_rng(seed))
    delta_reps = reps[:, 1, :] - reps[:, 0, :]
    gap_ref_reps, gap_h_reps = _spread(reps[:, 0, :]), _spread(reps[:, 1, :])

    per_group = []
    for g, name in enumerate(names):
        in_g = codes == g
        ref_only = int(np.sum(c_ref[in_g] & ~c_h[in_g]))
        h_only = int(np.sum(~c_ref[in_g] & c_h[in_g]))
        loss_fields: dict[str, Any] = {}
        if with_loss:
            loss_fields = dict(
                loss_ref=float(loss_ref[g]), loss_h=float(loss_h[g]),
                loss_delta=_estimate(loss_h[g] - loss_ref[g], reps[g, 4, :] - reps[g, 3, :], confidence_level),
            )
        per_group.append(GroupDisparity(
            group=str(name), n=int(sizes[g]), small=bool(sizes[g] < min_group_size),
            acc_ref=float(acc_ref[g]), acc_h=float(acc_h[g]),
            delta=_estimate(acc_h[g] - acc_ref[g], delta_reps[g], confidence_level),
            flip=_estimate(flip[g], reps[g, 2, :], confidence_level),
            mcnemar_p=mcnemar_exact_p(ref_only, h_only),
            ref_only_correct=ref_only, h_only_correct=h_only,
            **loss_fields,
        ))

    n = len(y_true)
    gap_ref = _estimate(_spread(acc_ref), gap_ref_reps, confidence_level)
    gap_h = _estimate(_spread(acc_h), gap_h_reps, confidence_level)
    hw = _estimate(gap_h.value - gap_ref.value, gap_h_reps - gap_ref_reps, confidence_level)
    note = "only one group: the gap is 0 by definition" if k == 1 else None

    def gap_metric(est: Estimate, acc: np.ndarray) -> MetricValue:
        return MetricValue(
            name="fairness_gap", value=est.value, method=METHOD, n=n, ci_low=est.ci_low, ci_high=est.ci_high,
            note=note, params=_gap_params(attribute, names, sizes, acc, min_group_size, n_resamples, seed, CI_METHOD),
        )

    loss_fields = {}
    if with_loss:
        loss_gap_ref_reps, loss_gap_h_reps = _spread(reps[:, 3, :]), _spread(reps[:, 4, :])
        loss_gap_ref = _estimate(_spread(loss_ref), loss_gap_ref_reps, confidence_level)
        loss_gap_h = _estimate(_spread(loss_h), loss_gap_h_reps, confidence_level)
        loss_fields = dict(
            loss_gap_ref=loss_gap_ref,
            loss_gap_h=loss_gap_h,
            loss_hw_disparity=_estimate(loss_gap_h.value - loss_gap_ref.value,
                                        loss_gap_h_reps - loss_gap_ref_reps, confidence_level),
            loss_xi=_estimate(_spread(loss_h - loss_ref), _spread(reps[:, 4, :] - reps[:, 3, :]), confidence_level),
        )

    return DisparityReport(
        attribute=attribute, n=n, min_group_size=min_group_size, groups=tuple(per_group),
        # Both gaps use the same resampled indices, so gap_h's CI equals fairness_gap(y_true, pred_h, ...)'s.
        gap_ref=gap_metric(gap_ref, acc_ref),
        gap_h=gap_metric(gap_h, acc_h),
        hw_disparity=MetricValue(
            name="hw_disparity", value=hw.value, method=METHOD, n=n, ci_low=hw.ci_low, ci_high=hw.ci_high, note=note,
            params={"attribute": attribute, "groups": k, "small_groups": _small(names, sizes, min_group_size),
                    "n_resamples": n_resamples, "seed": seed, "ci": PAIRED_CI_METHOD},
        ),
        xi=_estimate(_spread(acc_h - acc_ref), _spread(delta_reps), confidence_level),
        n_resamples=n_resamples, confidence_level=confidence_level, seed=seed,
        **loss_fields,
    )


def mcnemar_exact_p(ref_only_correct: int, h_only_correct: int) -> float:
    """Exact two-sided McNemar p-value from the two discordant-pair counts; 1.0 when there are none.

    The exact test is a binomial test of b against b + c with p = 1/2 (McNemar 1947; the
    exact form avoids the chi-square approximation, which is poor for small counts).
    """
    discordant = ref_only_correct + h_only_correct
    if discordant == 0:
        return 1.0
    return float(binomtest(ref_only_correct, discordant, 0.5, alternative="two-sided").pvalue)


def disparity_rows(report: DisparityReport, digits: int = 3) -> list[dict[str, str]]:
    """One display row per group for a CLI table: n, accuracies, delta, flip rate, McNemar p.

    Values are formatted strings, CIs as "value [low, high]". Loss columns appear only when
    the report has scores. Small groups are marked in the "small" column, never left out.
    """
    rows = []
    for g in report.groups:
        row = {
            "attribute": report.attribute,
            "group": g.group,
            "n": str(g.n),
            "small": "small" if g.small else "",
            "acc_ref": _fmt(g.acc_ref, digits),
            "acc_h": _fmt(g.acc_h, digits),
            "delta": _fmt_estimate(g.delta, digits),
            "flip": _fmt_estimate(g.flip, digits),
            "mcnemar_p": f"{g.mcnemar_p:.3g}",
        }
        if g.loss_delta is not None:
            row["loss_ref"] = _fmt(g.loss_ref, digits)
            row["loss_h"] = _fmt(g.loss_h, digits)
            row["loss_delta"] = _fmt_estimate(g.loss_delta, digits)
        rows.append(row)
    return rows


def disparity_summary_rows(report: DisparityReport, digits: int = 3) -> list[dict[str, str]]:
    """The overall numbers of a report as display rows: quantity, value, 95% CI, n."""

    def row(quantity: str, value: float | None, low: float | None, high: float | None) -> dict[str, str]:
        ci = "" if low is None or high is None else f"[{_fmt(low, digits)}, {_fmt(high, digits)}]"
        if "disparity" in quantity and zero_note(low, high):  # a difference: say when it may be none
            ci += f" {ZERO_NOTE}"
        return {"attribute": report.attribute, "quantity": quantity, "value": _fmt(value, digits),
                "ci": ci, "n": str(report.n)}

    out = [
        row("fairness_gap (ref)", report.gap_ref.value, report.gap_ref.ci_low, report.gap_ref.ci_high),
        row("fairness_gap (h)", report.gap_h.value, report.gap_h.ci_low, report.gap_h.ci_high),
        row("hw_disparity", report.hw_disparity.value, report.hw_disparity.ci_low, report.hw_disparity.ci_high),
        row("xi", report.xi.value, report.xi.ci_low, report.xi.ci_high),
    ]
    for quantity, est in (("loss_gap (ref)", report.loss_gap_ref), ("loss_gap (h)", report.loss_gap_h),
                          ("loss_hw_disparity", report.loss_hw_disparity), ("loss_xi", report.loss_xi)):
        if est is not None:
            out.append(row(quantity, est.value, est.ci_low, est.ci_high))
    return out


# ---------------------------------------------------------------------------- helpers


def _as_group_frame(groups: Any, task: str | None) -> pd.DataFrame:
    if groups is None:
        raise NoGroupsError(task)
    if isinstance(groups, pd.DataFrame):
        frame = groups
    elif isinstance(groups, pd.Series):
        frame = groups.to_frame(name=groups.name if groups.name is not None else "group")
    else:
        arr = np.asarray(groups, dtype=object)
        if arr.ndim != 1:
            raise FairnessError(f"group labels must be one label per example or a DataFrame; got shape {arr.shape}")
        frame = pd.DataFrame({"group": arr})
    if frame.shape[1] == 0:
        raise NoGroupsError(task)
    return frame.reset_index(drop=True)


def _pick_attributes(frame: pd.DataFrame, attributes: Sequence[str] | None) -> list[str]:
    if attributes is None:
        return list(frame.columns)
    cols = list(attributes)
    missing = [c for c in cols if c not in frame.columns]
    if missing or not cols:
        raise FairnessError(
            f"group attributes {missing or cols!r} not found; the group columns are {list(frame.columns)!r}"
        )
    return cols


def _clean_labels(col: pd.Series) -> np.ndarray:
    values = col.astype(object)
    labels = values.where(values.notna(), UNKNOWN_GROUP).map(str)
    return labels.to_numpy(dtype=object)


def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = x.to_numpy() if isinstance(x, (pd.Series, pd.Index)) else np.asarray(x)
    if arr.ndim != 1:
        raise FairnessError(f"{name} must be one value per example; got shape {arr.shape}")
    if len(arr) == 0:
        raise FairnessError(f"{name} is empty; fairness needs at least one example")
    return arr


def _check_pair(a: Any, b: Any, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_1d(a, name_a), _as_1d(b, name_b)
    if len(a) != len(b):
        raise FairnessError(f"{name_a} has {len(a)} examples but {name_b} has {len(b)}")
    return a, b


def _check_length(labels: Any, n: int, name: str) -> None:
    if len(labels) != n:
        raise FairnessError(f"{name} has {len(labels)} rows but there are {n} examples")


def _by_group(metric: Callable[..., float], y_true: np.ndarray, y_pred: np.ndarray,
              labels: np.ndarray, names: np.ndarray) -> np.ndarray:
    """MetricFrame's by_group values, in the order of ``names``."""
    frame = MetricFrame(metrics={"m": metric}, y_true=y_true, y_pred=y_pred, sensitive_features=labels)
    return frame.by_group["m"].reindex(names).to_numpy(dtype=float)


def _mean_of_y_pred(y_true: Any, y_pred: Any) -> float:
    # MetricFrame metric for per-example values passed in as y_pred (here: log loss).
    return float(np.mean(y_pred))


def _per_example_log_loss(y_true: np.ndarray, scores: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """-log p(true class) per example; rows that are not probabilities are treated as logits.

    Hand-written because sklearn's log_loss only returns the mean, and the paired bootstrap
    needs the per-example values.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[0] != len(y_true):
        raise FairnessError(
            f"scores must be an (n, C) array of per-class probabilities or logits with n = {len(y_true)}; "
            f"got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise FairnessError("scores contain NaN or infinite values")
    sums = s.sum(axis=1)
    if np.all((s >= 0) & (s <= 1)) and np.allclose(sums, 1.0, rtol=0, atol=_PROBABILITY_SUM_ATOL):
        p = s / sums[:, None]
    else:
        p = softmax(s, axis=1)
    col = _class_columns(y_true, s.shape[1], classes)
    eps = np.finfo(float).eps  # sklearn's clipping, so a confident miss stays finite
    return -np.log(np.clip(p[np.arange(len(y_true)), col], eps, 1.0))


def _class_columns(y_true: np.ndarray, n_classes: int, classes: Sequence[Any] | None) -> np.ndarray:
    if classes is None:
        if np.issubdtype(y_true.dtype, np.integer) and y_true.min() >= 0 and y_true.max() < n_classes:
            return y_true.astype(int)
        classes = np.unique(y_true)
        if len(classes) != n_classes:
            raise FairnessError(
                f"scores have {n_classes} columns but y_true has {len(classes)} distinct labels; "
                "pass classes= to name the class of each score column"
            )
    classes = list(classes)
    if len(classes) != n_classes:
        raise FairnessError(f"classes names {len(classes)} classes but scores have {n_classes} columns")
    index = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([index[v] for v in y_true.tolist()], dtype=int)
    except KeyError as err:
        raise FairnessError(f"y_true label {err.args[0]!r} is not among the classes {classes!r}") from None


def _stratified_replicates(columns: np.ndarray, codes: np.ndarray, n_groups: int, n_resamples: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of each per-example column, resampled within each group.

    Returns an array (n_groups, n_columns, n_resamples). Hand-written rather than
    scipy.stats.bootstrap because the gap and xi need one joint replicate across all groups
    with group sizes held fixed (scipy resamples the pooled sample, so a small group can
    vanish from a replicate and leave max/min undefined), the paired comparison needs the
    same indices for every column, and scipy rejects groups of a single example.
    Groups are drawn in a fixed order, so the same seed gives the same indices whatever the
    columns are: fairness_gap and compare_to_reference agree on a profile's gap CI.
    """
    if n_resamples < 1:
        raise FairnessError(f"n_resamples must be at least 1; got {n_resamples}")
    out = np.empty((n_groups, columns.shape[0], n_resamples))
    for g in range(n_groups):
        vals = columns[:, codes == g]
        size = vals.shape[1]
        block = max(1, _MAX_RESAMPLE_CELLS // size)
        for start in range(0, n_resamples, block):
            stop = min(n_resamples, start + block)
            idx = rng.integers(0, size, size=(stop - start, size))
            out[g, :, start:stop] = vals[:, idx].mean(axis=2)
    return out


def _spread(values: np.ndarray) -> Any:
    """max - min over groups (axis 0): the gap, and xi when applied to the deltas."""
    return np.max(values, axis=0) - np.min(values, axis=0)


def _estimate(point: float, replicates: np.ndarray, confidence_level: float) -> Estimate:
    alpha = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    point = float(point)
    # A percentile interval of a max-minus-min statistic can miss its own point estimate (the
    # bootstrap max is biased upwards when groups are close); widen it so that a table never
    # shows a value outside its own interval.
    return Estimate(value=point, ci_low=float(min(low, point)), ci_high=float(max(high, point)))


def _small(names: np.ndarray, sizes: np.ndarray, min_group_size: int) -> list[str]:
    return [str(n) for n, s in zip(names, sizes) if s < min_group_size]


def _gap_params(attribute: str, names: np.ndarray, sizes: np.ndarray, acc: np.ndarray, min_group_size: int,
                n_resamples: int, seed: int, ci_method: str) -> dict[str, Any]:
    return {
        "attribute": attribute,
        "groups": len(names),
        "max_group": str(names[int(np.argmax(acc))]),
        "min_group": str(names[int(np.argmin(acc))]),
        "small_groups": _small(names, sizes, min_group_size),
        "min_group_size": min_group_size,
        "n_resamples": n_resamples,
        "seed": seed,
        "ci": ci_method,
    }


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _fmt_estimate(est: Estimate, digits: int) -> str:
    return f"{_fmt(est.value, digits)} [{_fmt(est.ci_low, digits)}, {_fmt(est.ci_high, digits)}]"


# ---------------------------------------------------------------------------- base-rate-aware measures
ZERO_NOTE = "not distinguishable from zero (the 95% CI includes 0)"


def zero_note(low: float | None, high: float | None) -> str | None:
    """The words a difference gets when its CI includes zero."""
    return ZERO_NOTE if low is not None and high is not None and low <= 0 <= high else None


def majority_baseline(y_true: Any, group_labels: Any = None) -> tuple[Any, float, dict[str, float]]:
    """(majority class of ``y_true``, accuracy of always answering it overall, and per group).

    Accuracy means little beside it: a model at or below the constant answer has learned
    nothing the base rate does not give, and a per-group gap may be the base rates' gap."""
    y = _as_1d(y_true, "y_true")
    classes, counts = np.unique(y, return_counts=True)
    major = classes[int(np.argmax(counts))]
    per_group: dict[str, float] = {}
    if group_labels is not None:
        labels = np.asarray(group_labels).astype(str)
        for g in np.unique(labels):
            per_group[str(g)] = float(np.mean(y[labels == g] == major))
    return major.item() if hasattr(major, "item") else major, float(np.mean(y == major)), per_group


def _binary_rates(y: np.ndarray, p: np.ndarray, codes: np.ndarray, n_groups: int, positive: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: selection rate, true-positive rate, false-positive rate (nan where undefined)."""
    sel, tpr, fpr = np.full(n_groups, np.nan), np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    for g in range(n_groups):
        m = codes == g
        yp, yt = p[m] == positive, y[m] == positive
        sel[g] = yp.mean() if m.any() else np.nan
        if yt.any():
            tpr[g] = yp[yt].mean()
        if (~yt).any():
            fpr[g] = yp[~yt].mean()
    return sel, tpr, fpr


def _dp_eo(y, p, codes, n_groups, positive) -> tuple[float, float]:
    sel, tpr, fpr = _binary_rates(y, p, codes, n_groups, positive)
    dp = float(np.nanmax(sel) - np.nanmin(sel))
    eo = float(max(np.nanmax(tpr) - np.nanmin(tpr), np.nanmax(fpr) - np.nanmin(fpr)))
    return dp, eo


def base_rate_aware_values(y_true: Any, y_pred: Any, group_labels: Any, *, attribute: str = "group",
                           n_resamples: int = 500, seed: int = 0,
                           confidence_level: float = DEFAULT_CONFIDENCE_LEVEL) -> list[MetricValue]:
    """fairlearn's demographic-parity and equalized-odds differences of one run, with a stratified
    bootstrap CI, for a binary task (positive class: the minority class of ``y_true``); empty otherwise.

    Unlike the accuracy gap, these do not reproduce base rates: a constant answer has a
    demographic-parity difference and an equalized-odds difference of 0."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y, p = _check_pair(y_true, y_pred, "y_true", "y_pred")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) != 2:
        return []
    positive = classes[int(np.argmin(counts))]
    labels = np.asarray(group_labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    yb, pb = (y == positive).astype(int), (p == positive).astype(int)
    dp = float(demographic_parity_difference(yb, pb, sensitive_features=labels))
    eo = float(equalized_odds_difference(yb, pb, sensitive_features=labels))
    rng = np.random.default_rng(seed)
    idx_by_group = [np.flatnonzero(codes == g) for g in range(len(names))]
    reps = np.empty((n_resamples, 2))
    for r in range(n_resamples):
        idx = np.concatenate([ix[rng.integers(0, ix.size, ix.size)] for ix in idx_by_group])
        reps[r] = _dp_eo(y[idx], p[idx], codes[idx], len(names), positive)
    out = []
    for k, (name, point) in enumerate((("demographic_parity_diff", dp), ("equalized_odds_diff", eo))):
        est = _estimate(point, reps[:, k], confidence_level)
        out.append(MetricValue(name, est.value, "derived:fairlearn", n=len(y), ci_low=est.ci_low, ci_high=est.ci_high,
                               note=zero_note(est.ci_low, est.ci_high),
                               params={"attribute": attribute, "positive_class": str(positive), "groups": len(names),
                                       "n_resamples": n_resamples, "ci": CI_METHOD}))
    return out
