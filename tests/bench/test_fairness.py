"""Tests for heptathlon.bench.fairness: per-group quality and hardware-induced fairness disparity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklego.datasets import load_arrests

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.fairness import (
    DisparityReport,
    NoGroupsError,
    compare_to_reference,
    disparity_rows,
    disparity_summary_rows,
    fairness_gap,
    label_groups,
    mcnemar_exact_p,
    per_group_metrics,
)
from heptathlon.bench.metrics import METHOD_KINDS

FAST = 200  # resamples: enough to exercise the bootstrap, small enough to keep the file quick


@pytest.fixture(scope="module")
def arrests():
    """The arrests data with a small fitted classifier; ``h`` perturbs its scores to mimic other numerics."""
    df = load_arrests(as_frame=True)
    x = np.column_stack([
        df["age"].to_numpy(float),
        df["checks"].to_numpy(float),
        (df["employed"] == "Yes").to_numpy(float),
        (df["citizen"] == "Yes").to_numpy(float),
    ])
    y = df["released"].to_numpy(dtype=object)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    scores_ref = model.predict_proba(x)
    noise = np.random.default_rng(7).normal(0.0, 0.15, size=scores_ref.shape)
    logits_h = np.log(scores_ref) + noise  # logits: exercises the softmax path
    classes = model.classes_
    pred_ref = classes[scores_ref.argmax(axis=1)]
    pred_h = classes[logits_h.argmax(axis=1)]
    return dict(df=df, y=y, pred_ref=pred_ref, pred_h=pred_h, scores_ref=scores_ref, logits_h=logits_h,
                classes=classes)


def _lookup(rows, attribute, group, metric="accuracy"):
    found = [r for r in rows if r.attribute == attribute and r.group == group and r.metric == metric]
    assert len(found) == 1, (attribute, group, metric, found)
    return found[0]


# ---------------------------------------------------------------- per-group metrics on arrests


def test_per_group_accuracy_matches_metricframe(arrests):
    df, y, pred = arrests["df"], arrests["y"], arrests["pred_ref"]
    rows = per_group_metrics(y, pred, df[["colour", "sex"]], n_resamples=FAST)

    for attribute in ("colour", "sex"):
        expected = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred,
                               sensitive_features=df[attribute]).by_group
        for group, value in expected.items():
            row = _lookup(rows, attribute, group)
            assert row.value == pytest.approx(value, abs=1e-12)
            assert row.n == int((df[attribute] == group).sum())

    both = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=df[["colour", "sex"]]).by_group
    for (colour, sex), value in both.items():
        row = _lookup(rows, "colour×sex", f"{colour}×{sex}")
        assert row.value == pytest.approx(value, abs=1e-12)
    # 2 colours + 2 sexes + 4 intersections, accuracy only (no scores given)
    assert len(rows) == 8
    assert {r.metric for r in rows} == {"accuracy"}


def test_per_group_log_loss_matches_sklearn_and_logits_equal_probabilities(arrests):
    df, y, classes = arrests["df"], arrests["y"], arrests["classes"]
    probs = arrests["scores_ref"]
    with_probs = per_group_metrics(y, arrests["pred_ref"], df[["colour"]], scores=probs, classes=classes,
                                   n_resamples=FAST)
    with_logits = per_group_metrics(y, arrests["pred_ref"], df[["colour"]], scores=np.log(probs) + 3.0,
                                    classes=classes, n_resamples=FAST)
    for group in ("Black", "White"):
        mask = (df["colour"] == group).to_numpy()
        expected = log_loss(y[mask], probs[mask], labels=classes)
        assert _lookup(with_probs, "colour", group, "log_loss").value == pytest.approx(expected, rel=1e-9)
        assert _lookup(with_logits, "colour", group, "log_loss").value == pytest.approx(expected, rel=1e-9)


def test_small_groups_are_flagged_not_dropped(arrests):
    df, y, pred = arrests["df"], arrests["y"], arrests["pred_ref"]
    rows = per_group_metrics(y, pred, df[["colour", "sex"]], min_group_size=100, n_resamples=FAST)
    black_female = _lookup(rows, "colour×sex", "Black×Female")  # 72 people in the data
    assert black_female.n == 72
    assert black_female.small is True
    assert _lookup(rows, "colour×sex", "White×Female").small is False  # 371 people
    assert _lookup(rows, "sex", "Female").small is False


def test_tiny_group_is_reported_with_its_size():
    y = np.array([1, 0, 1, 1, 0, 1, 0])
    pred = np.array([1, 0, 0, 1, 0, 1, 1])
    groups = pd.DataFrame({"g": ["a", "a", "a", "a", "a", "a", "b"]})
    rows = per_group_metrics(y, pred, groups, n_resamples=FAST)
    b = _lookup(rows, "g", "b")
    assert (b.n, b.value, b.small) == (1, 0.0, True)
    gap = fairness_gap(y, pred, groups["g"], n_resamples=FAST)
    assert gap.value == pytest.approx(5 / 6)
    assert gap.params["small_groups"] == ["a", "b"]


def test_missing_group_values_become_unknown_group():
    y = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    pred = np.array([1, 0, 0, 0, 1, 1, 1, 1])
    groups = pd.DataFrame({
        "colour": ["x", "x", None, "y", np.nan, "y", "x", None],
        "sex": ["m", "f", "f", "m", "m", None, "f", "m"],
    })
    rows = per_group_metrics(y, pred, groups, n_resamples=FAST)
    unknown = _lookup(rows, "colour", "unknown")
    assert unknown.n == 3
    # rows 2, 4, 7: correct, correct, correct
    assert unknown.value == 1.0
    assert _lookup(rows, "sex", "unknown").n == 1
    assert _lookup(rows, "colour×sex", "unknown×f").n == 1
    assert _lookup(rows, "colour×sex", "y×unknown").n == 1
    assert sum(r.n for r in rows if r.attribute == "colour") == len(y)

    report = compare_to_reference(y, pred, pred, groups["colour"], n_resamples=FAST)
    assert "unknown" in [row["group"] for row in disparity_rows(report)]


def test_no_group_labels_raises_no_groups_error():
    y = np.array([0, 1])
    with pytest.raises(NoGroupsError, match="task 'sst2' has no group labels; no fairness numbers"):
        fairness_gap(y, y, None, task="sst2")
    with pytest.raises(NoGroupsError, match="no group labels"):
        per_group_metrics(y, y, pd.DataFrame(index=[0, 1]))
    with pytest.raises(NoGroupsError):
        compare_to_reference(y, y, y, None)
    assert issubclass(NoGroupsError, HeptathlonError)


def test_bad_inputs_name_the_argument():
    y = np.array([0, 1, 1])
    with pytest.raises(HeptathlonError, match="y_true has 3 examples but pred_h has 2"):
        compare_to_reference(y, y, y[:2], ["a", "b", "a"])
    with pytest.raises(HeptathlonError, match="group_labels has 2 rows"):
        fairness_gap(y, y, ["a", "b"])
    with pytest.raises(HeptathlonError, match="scores_ref and scores_h"):
        compare_to_reference(y, y, y, ["a", "b", "a"], scores_ref=np.eye(2)[y])
    with pytest.raises(HeptathlonError, match=r"not found.*\['colour'\]"):
        per_group_metrics(y, y, pd.DataFrame({"colour": ["a", "b", "a"]}), attributes=["sex"])


def test_fairness_gap_is_max_minus_min_metricframe_accuracy(arrests):
    df, y, pred = arrests["df"], arrests["y"], arrests["pred_ref"]
    gap = fairness_gap(y, pred, df["colour"], n_resamples=FAST)
    by_group = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=df["colour"]).by_group
    assert gap.name == "fairness_gap"
    assert gap.unit == "fraction"
    assert gap.value == pytest.approx(by_group.max() - by_group.min(), abs=1e-12)
    assert gap.n == len(y)
    assert gap.method.split(":", 1)[0] in METHOD_KINDS
    assert gap.ci_low <= gap.value <= gap.ci_high
    assert gap.ci_high - gap.ci_low > 0


def test_compare_to_reference_on_arrests(arrests):
    df, y = arrests["df"], arrests["y"]
    report = compare_to_reference(
        y, arrests["pred_ref"], arrests["pred_h"], df["colour"],
        scores_ref=arrests["scores_ref"], scores_h=arrests["logits_h"], classes=arrests["classes"],
        n_resamples=FAST,
    )
    assert isinstance(report, DisparityReport)
    assert [g.group for g in report.groups] == ["Black", "White"]
    for g in report.groups:
        mask = (df["colour"] == g.group).to_numpy()
        assert g.n == mask.sum()
        assert g.acc_ref == pytest.approx(accuracy_score(y[mask], arrests["pred_ref"][mask]))
        assert g.acc_h == pytest.approx(accuracy_score(y[mask], arrests["pred_h"][mask]))
        assert g.delta.value == pytest.approx(g.acc_h - g.acc_ref)
        assert g.flip.value == pytest.approx(np.mean(arrests["pred_ref"][mask] != arrests["pred_h"][mask]))
        assert g.loss_delta is not None and g.loss_ref == pytest.approx(
            log_loss(y[mask], arrests["scores_ref"][mask], labels=arrests["classes"]))
    assert report.hw_disparity.name == "hw_disparity"
    assert report.hw_disparity.value == pytest.approx(report.gap_h.value - report.gap_ref.value)
    deltas = [g.delta.value for g in report.groups]
    assert report.xi.value == pytest.approx(max(deltas) - min(deltas))
    assert report.loss_hw_disparity is not None

    # The paired bootstrap draws the same indices as fairness_gap for the same seed, so the
    # two agree on profile h's gap and its CI.
    alone = fairness_gap(y, arrests["pred_h"], df["colour"], n_resamples=FAST)
    assert (report.gap_h.value, report.gap_h.ci_low, report.gap_h.ci_high) == pytest.approx(
        (alone.value, alone.ci_low, alone.ci_high))

    rows = disparity_rows(report)
    assert [r["group"] for r in rows] == ["Black", "White"]
    assert {"n", "small", "acc_ref", "acc_h", "delta", "flip", "mcnemar_p", "loss_delta"} <= rows[0].keys()
    summary = {r["quantity"]: r for r in disparity_summary_rows(report)}
    assert summary["hw_disparity"]["value"] == f"{report.hw_disparity.value:.3f}"
    assert "loss_xi" in summary


# ---------------------------------------------------------------- hand-computed cases


def test_flip_rates_and_deltas_hand_computed():
    #             group a: 4 examples   | group b: 3 examples
    y_true = np.array([0, 1, 1, 2,        2, 0, 1])
    pred_ref = np.array([0, 1, 1, 0,      2, 0, 0])
    pred_h = np.array([0, 2, 1, 1,        2, 0, 0])
    groups = ["a", "a", "a", "a", "b", "b", "b"]
    report = compare_to_reference(y_true, pred_ref, pred_h, groups, n_resamples=FAST)
    a, b = report.groups
    # a: predictions differ at positions 1 and 3 -> 2/4; ref right 3/4, h right 2/4
    assert (a.group, a.n, a.flip.value, a.acc_ref, a.acc_h) == ("a", 4, 0.5, 0.75, 0.5)
    assert a.delta.value == -0.25
    # position 3 is wrong on both profiles yet flips (0 -> 1): a flip, not a discordant pair
    assert (a.ref_only_correct, a.h_only_correct) == (1, 0)
    # b: identical predictions
    assert (b.flip.value, b.delta.value, b.mcnemar_p) == (0.0, 0.0, 1.0)
    assert (b.flip.ci_low, b.flip.ci_high, b.delta.ci_low, b.delta.ci_high) == (0.0, 0.0, 0.0, 0.0)
    # gap(ref) = |0.75 - 2/3|, gap(h) = |0.5 - 2/3|
    assert report.hw_disparity.value == pytest.approx((2 / 3 - 0.5) - (0.75 - 2 / 3))
    assert report.xi.value == pytest.approx(0.25)


def test_mcnemar_exact_p_hand_computed():
    # b = 1, c = 7: p = 2 * P(X <= 1), X ~ Bin(8, 1/2) = 2 * (1 + 8) / 256
    assert mcnemar_exact_p(1, 7) == pytest.approx(18 / 256, rel=1e-12)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == pytest.approx(1.0)

    # the same case through compare_to_reference: 8 discordant pairs plus 2 concordant ones
    y = np.ones(10, dtype=int)
    ref = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 0])  # right on 0 and 8
    h = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 0])  # right on 1..8
    report = compare_to_reference(y, ref, h, ["g"] * 10, n_resamples=FAST)
    (g,) = report.groups
    assert (g.ref_only_correct, g.h_only_correct) == (1, 7)
    assert g.mcnemar_p == pytest.approx(18 / 256, rel=1e-12)
    assert report.hw_disparity.value == 0.0  # one group: the gap is 0 by definition
    assert report.hw_disparity.note is not None


def test_label_groups_intersects_columns_and_names_unknown():
    attribute, labels = label_groups(pd.DataFrame({"colour": ["B", None], "sex": ["F", "M"]}))
    assert attribute == "colour×sex"
    assert list(labels) == ["B×F", "unknown×M"]


# ---------------------------------------------------------------- properties


@st.composite
def labelled_predictions(draw, min_size=2, max_size=40):
    n = draw(st.integers(min_size, max_size))
    ints = st.lists(st.integers(0, 2), min_size=n, max_size=n)
    y = np.array(draw(ints))
    ref = np.array(draw(ints))
    h = np.array(draw(ints))
    groups = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    return y, ref, h, groups


# deadline=None: no wall-clock limits in tests; 25 examples keep the file quick (MetricFrame costs ~20 ms a call).
PROPERTY = settings(max_examples=25, deadline=None)


@PROPERTY
@given(labelled_predictions())
def test_gap_is_non_negative_and_inside_its_ci(case):
    y, ref, _, groups = case
    gap = fairness_gap(y, ref, groups, n_resamples=50)
    assert gap.value >= 0.0
    assert 0.0 <= gap.ci_low <= gap.value <= gap.ci_high <= 1.0


@PROPERTY
@given(labelled_predictions())
def test_identical_predictions_give_zero_disparity_and_no_flips(case):
    y, ref, _, groups = case
    report = compare_to_reference(y, ref, ref.copy(), groups, n_resamples=50)
    assert (report.hw_disparity.value, report.hw_disparity.ci_low, report.hw_disparity.ci_high) == (0.0, 0.0, 0.0)
    assert (report.xi.value, report.xi.ci_low, report.xi.ci_high) == (0.0, 0.0, 0.0)
    for g in report.groups:
        assert (g.flip.value, g.flip.ci_low, g.flip.ci_high) == (0.0, 0.0, 0.0)
        assert (g.delta.value, g.delta.ci_low, g.delta.ci_high) == (0.0, 0.0, 0.0)
        assert g.mcnemar_p == 1.0


@PROPERTY
@given(labelled_predictions(), st.randoms(use_true_random=False))
def test_permuting_examples_changes_no_point_estimate(case, random):
    y, ref, h, groups = case
    order = list(range(len(y)))
    random.shuffle(order)
    perm = np.array(order)
    groups_p = [groups[i] for i in order]

    before = compare_to_reference(y, ref, h, groups, n_resamples=20)
    after = compare_to_reference(y[perm], ref[perm], h[perm], groups_p, n_resamples=20)
    assert [(g.group, g.n, g.acc_ref, g.acc_h, g.delta.value, g.flip.value, g.mcnemar_p) for g in before.groups] == \
        [(g.group, g.n, g.acc_ref, g.acc_h, g.delta.value, g.flip.value, g.mcnemar_p) for g in after.groups]
    assert before.hw_disparity.value == after.hw_disparity.value
    assert before.xi.value == after.xi.value

    frame = pd.DataFrame({"g": groups})
    rows_before = per_group_metrics(y, ref, frame, n_resamples=20)
    rows_after = per_group_metrics(y[perm], ref[perm], frame.iloc[perm], n_resamples=20)
    assert [(r.group, r.value, r.n) for r in rows_before] == [(r.group, r.value, r.n) for r in rows_after]


@PROPERTY
@given(labelled_predictions(), st.integers(0, 2**16))
def test_every_ci_encloses_its_point_estimate(case, seed):
    y, ref, h, groups = case
    logits = np.random.default_rng(seed).normal(size=(len(y), 3))
    report = compare_to_reference(y, ref, h, groups, scores_ref=logits, scores_h=logits * 1.1,
                                  n_resamples=50, seed=seed)
    estimates = [report.xi, report.loss_gap_ref, report.loss_gap_h, report.loss_hw_disparity, report.loss_xi]
    for g in report.groups:
        estimates += [g.delta, g.flip, g.loss_delta]
        assert 0.0 <= g.flip.value <= 1.0
        assert 0.0 <= g.mcnemar_p <= 1.0
    for est in estimates:
        assert est.ci_low <= est.value <= est.ci_high
    for mv in (report.gap_ref, report.gap_h, report.hw_disparity):
        assert mv.ci_low <= mv.value <= mv.ci_high
        assert math.isfinite(mv.value)
    for row in per_group_metrics(y, ref, pd.DataFrame({"g": groups}), scores=logits, n_resamples=50, seed=seed):
        assert row.ci_low <= row.value <= row.ci_high
