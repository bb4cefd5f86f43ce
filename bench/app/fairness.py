"""Fairness on stored runs: per-group metrics at run time, and disparity against a reference
profile on demand (``heptathlon fairness``). Pure arithmetic lives in heptathlon.bench.fairness."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from heptathlon.bench.errors import FairnessError
from heptathlon.bench.fairness import (DisparityReport, NoGroupsError, base_rate_aware_values, compare_to_reference,
                                       fairness_gap, label_groups, majority_baseline, per_group_metrics, zero_note)
from heptathlon.bench.metrics import MetricValue, SampleKind
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.tasks import TaskData
from heptathlon.db import queries as Q
from heptathlon.db.models import GroupMetric, Measurement, Run, Submission
from heptathlon.db.session import ensure_schema, session_scope

DEFAULT_REFERENCE = "cpu-1core"  # fp32 on CPU; a task may configure another
DISPARITY_METRICS = ("delta_accuracy", "flip_rate", "mcnemar_p")


def attribute_sets(data: TaskData) -> list[list[str]]:
    cols = list(data.groups.columns)
    sets = [[c] for c in cols]
    if len(cols) > 1:
        sets.append(cols)
    return sets


def run_fairness(data: TaskData, preds: np.ndarray, scores: np.ndarray | None) -> tuple[list, list[MetricValue]]:
    """Per-group rows and fairness_gap values for one run. A task without groups gets one
    'unavailable' value saying so, never a silent zero."""
    if data.groups.shape[1] == 0:
        return [], [MetricValue.unavailable("fairness_gap", f"task {data.name!r} has no group labels; no fairness numbers")]
    groups = per_group_metrics(data.y_test, preds, data.groups, scores=scores, intersections=True)
    groups += majority_rows(data, groups)
    values = []
    sets = attribute_sets(data)
    for i, attrs in enumerate(sets):
        v = fairness_gap(data.y_test, preds, data.groups[attrs], task=data.name)
        headline = i == len(sets) - 1  # the finest grouping (the intersection) is the headline gap
        attribute, labels = label_groups(data.groups[attrs], task=data.name)
        _, base, per_group = majority_baseline(data.y_test, labels)
        base_gap = max(per_group.values()) - min(per_group.values()) if per_group else 0.0
        note = "; ".join(x for x in (v.note, zero_note(v.ci_low, v.ci_high),
                                     f"a constant majority answer has a gap of {base_gap:.3f} here "
                                     "(base rates differ between groups)") if x)
        values.append(MetricValue("fairness_gap", v.value, v.method, n=v.n, ci_low=v.ci_low, ci_high=v.ci_high,
                                  note=note, params={**v.params, "attribute": "×".join(attrs),
                                                     "majority_baseline_gap": base_gap,
                                                     **({} if headline else {"detail": True})}))
        values += [replace(b, params={**b.params, **({} if headline else {"detail": True})})
                   for b in base_rate_aware_values(data.y_test, preds, labels, attribute="×".join(attrs))]
    return groups, values


def majority_rows(data: TaskData, groups: list) -> list:
    """A ``majority_baseline`` row beside every group's accuracy row: the accuracy of always answering
    the overall majority class in that group."""
    from heptathlon.bench.fairness import GroupMetric

    out = []
    by_attr: dict[str, list] = {}
    for g in groups:
        if g.metric == "accuracy":
            by_attr.setdefault(g.attribute, []).append(g)
    for attribute, rows in by_attr.items():
        attrs = attribute.split("×") if "×" in attribute else [attribute]
        cols = [c for c in attrs if c in data.groups.columns] or list(data.groups.columns[:1])
        _, labels = label_groups(data.groups[cols], task=data.name)
        _, _, per_group = majority_baseline(data.y_test, labels)
        for r in rows:
            if r.group in per_group:
                out.append(GroupMetric(attribute=r.attribute, group=r.group, metric="majority_baseline",
                                       value=per_group[r.group], n=r.n, ci_low=None, ci_high=None, small=r.small))
    return out


@dataclass
class FairnessTable:
    submission: str
    task: str
    reference: str
    reference_run: str
    reports: dict[str, list[tuple[str, str, DisparityReport]]]  # attribute -> [(profile, run id, report)]
    per_profile_gaps: list[dict[str, Any]]
    # attribute -> {"overall": accuracy of always answering the majority class, group: the same per group}
    majority: dict[str, dict[str, float]] | None = None


def _latest_runs(s, submission: str) -> dict[str, Run]:
    runs = list(s.scalars(select(Run).join(Submission, Run.submission_id == Submission.id)
                          .where(Submission.name == submission, Run.status == RunStatus.SUCCEEDED)
                          .order_by(Run.finished_at)))
    latest: dict[str, Run] = {}
    for r in runs:
        latest[r.profile_name] = r  # predictions come from the quality pass, the same in every scenario
    return latest


def compute_disparity(submission: str, *, reference: str | None = None, db: str | None = None,
                      store: bool = True) -> FairnessTable:
    from heptathlon.bench.tasks import resolve_task

    ensure_schema(db)
    with session_scope(db) as s:
        latest = _latest_runs(s, submission)
        if not latest:
            raise FairnessError(f"submission {submission!r} has no succeeded runs; "
                                f"run it first: heptathlon run <folder> --profile {reference or DEFAULT_REFERENCE}")
        task_name = next(iter(latest.values())).task_name
        reference = reference or DEFAULT_REFERENCE
        if reference not in latest:
            raise FairnessError(f"submission {submission!r} has no succeeded run on the reference profile "
                                f"{reference!r}; make it with: heptathlon run <folder> --profile {reference} "
                                f"(profiles with runs: {', '.join(sorted(latest))})")
        preds = {p: Q.load_samples(s, r.id, SampleKind.PREDICTIONS) for p, r in latest.items()}
        scores = {p: Q.load_samples(s, r.id, SampleKind.SCORES) for p, r in latest.items()}
        ids = {p: r.id for p, r in latest.items()}
        sub = next(iter(latest.values())).submission
        task_ref, store_path = sub.manifest["task"], sub.store_path  # not `store`: that is the caller's flag
    data = resolve_task(task_ref, store_path).load()
    if data.groups.shape[1] == 0:
        raise NoGroupsError(task_name)
    n_classes = data.n_classes
    reports: dict[str, list] = {}
    gaps = []
    majority: dict[str, dict[str, float]] = {}
    for attrs in attribute_sets(data):
        key = "×".join(attrs)
        reports[key] = []
        _, overall, per_group = majority_baseline(data.y_test, label_groups(data.groups[attrs], task=task_name)[1])
        majority[key] = {"overall": overall, **per_group}
        for prof in sorted(preds):
            if prof == reference:
                continue
            sr, sh = scores[reference], scores[prof]
            rep = compare_to_reference(data.y_test, preds[reference], preds[prof], data.groups[attrs],
                                       scores_ref=None if sr is None else sr.reshape(-1, n_classes),
                                       scores_h=None if sh is None else sh.reshape(-1, n_classes), task=task_name)
            reports[key].append((prof, ids[prof], rep))
    if store:
        with session_scope(db) as s:
            for key, items in reports.items():
                for prof, rid, rep in items:
                    s.execute(delete(GroupMetric).where(GroupMetric.run_id == rid, GroupMetric.attribute == key,
                                                        GroupMetric.metric.in_(DISPARITY_METRICS)))
                    s.execute(delete(Measurement).where(Measurement.run_id == rid, Measurement.metric == "hw_disparity"))
                    for g in rep.groups:
                        for metric, est in (("delta_accuracy", g.delta), ("flip_rate", g.flip)):
                            s.add(GroupMetric(run_id=rid, attribute=key, group=g.group, metric=metric, value=est.value,
                                              ci_low=est.ci_low, ci_high=est.ci_high, n=g.n, small=g.small))
                        s.add(GroupMetric(run_id=rid, attribute=key, group=g.group, metric="mcnemar_p",
                                          value=g.mcnemar_p, ci_low=None, ci_high=None, n=g.n, small=g.small))
            for key, items in reports.items():
                for prof, rid, rep in items:
                    hd = rep.hw_disparity
                    headline = key == list(reports)[-1]
                    Q.add_measurements(s, rid, [MetricValue("hw_disparity", hd.value, hd.method, n=hd.n, ci_low=hd.ci_low,
                                                            ci_high=hd.ci_high, note=hd.note,
                                                            params={**hd.params, "attribute": key, "reference": reference,
                                                                    **({} if headline else {"detail": True})})])
    return FairnessTable(submission, task_name, reference, ids[reference], reports, gaps, majority)

