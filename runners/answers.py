"""Answers validated at the boundary, and the timed pass checked against the quality pass.

Whatever an adapter's ``postprocess`` returns (numpy arrays from a runtime, or the lists a
``command`` submission wrote as JSON) is checked here, on the harness side, before anything
is counted: labels are integers in ``[0, classes)`` (no bools, no floats, so nothing is ever
truncated), scores are finite with shape ``(batch, classes)``. A violation is one
:class:`AnswerError` line naming the submission, the request (or the instances) and the field.
No raw numpy error reaches the user.

``compare_timed`` is a check like MLPerf's compliance TEST01: the answers of a sample of
timed-pass queries (kept by :class:`AnswerSampler` inside the measured loop, postprocessed only
after it) must match the quality pass's answers for the same instances, within a tolerance
that fits the profile's precision.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError

SAMPLE_QUERIES = 64  # timed-pass queries whose answers are compared with the quality pass
# Allowed score difference, relative to max(1, the largest |score| of the instance's row): a
# different batch size changes the order of floating-point sums, and int8/fp16 more so.
SCORE_TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2, "fp16": 1e-2, "int8": 1e-1}
_SHOW = 40  # characters of a bad value shown in a message


class AnswerError(ModelError):
    """An answer broke the output contract, or the timed pass disagreed with the quality pass."""


def _show(v: Any) -> str:
    s = repr(v.item() if isinstance(v, np.generic) else v)
    return s if len(s) <= _SHOW else s[:_SHOW - 3] + "..."


def _label_problem(v: Any, classes: int) -> str | None:
    """Why one label is not an integer in [0, classes), or None when it is."""
    if isinstance(v, bool | np.bool_):
        return f"{_show(v)} is a boolean, not an integer label"
    if isinstance(v, int | np.integer):
        return None if 0 <= v < classes else f"{_show(v)} is outside [0, {classes})"
    if isinstance(v, float | np.floating):
        return f"{_show(v)} is not an integer (labels are never rounded or truncated)"
    if isinstance(v, list | tuple | np.ndarray):
        return f"{_show(v)} is a nested list, not one integer label per instance"
    return f"{_show(v)} ({type(v).__name__}) is not an integer label"


def check_labels(labels: Any, *, n: int, classes: int, where: str, field: str = "outputs") -> np.ndarray:
    """``labels`` (a list or an array) as an int64 array of n labels in [0, classes); else AnswerError."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise AnswerError(f"{where}: field {field!r}: labels of shape {labels.shape}; expected ({n},), "
                              "one integer label per instance")
        if labels.dtype.kind in "iu":
            if len(labels) != n:
                raise AnswerError(f"{where}: field {field!r}: {len(labels)} labels for {n} instances")
            if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                i = int(np.flatnonzero((labels < 0) | (labels >= classes))[0])
                raise AnswerError(f"{where}: field {field!r}: position {i}: label {_label_problem(labels[i], classes)}")
            return labels.astype(np.int64, copy=False)
        labels = labels.tolist()  # bools, floats, strings, objects: found and named below
    if not isinstance(labels, list | tuple):
        raise AnswerError(f"{where}: field {field!r}: {_show(labels)} is not a list of labels")
    if len(labels) != n:
        raise AnswerError(f"{where}: field {field!r}: {len(labels)} labels for {n} instances")
    for i, v in enumerate(labels):
        if type(v) is not int or not 0 <= v < classes:
            problem = _label_problem(v, classes)
            if problem:
                raise AnswerError(f"{where}: field {field!r}: position {i}: label {problem}")
    return np.array(labels, dtype=np.int64)


def check_scores(scores: Any, *, n: int, classes: int, where: str, field: str = "scores") -> np.ndarray:
    """``scores`` as a finite float32 array of shape (n, classes); else AnswerError."""
    if isinstance(scores, np.ndarray) and scores.dtype.kind not in "iuf":
        raise AnswerError(f"{where}: field {field!r}: scores of type {scores.dtype}; expected numbers")
    try:
        if isinstance(scores, list | tuple) and any(
                isinstance(v, bool | str) for row in scores if isinstance(row, list | tuple) for v in row):
            raise TypeError
        a64 = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # ragged rows, strings, objects, huge ints
        raise AnswerError(f"{where}: field {field!r}: not a ({n}, {classes}) array of numbers") from None
    if a64.shape != (n, classes):
        raise AnswerError(f"{where}: field {field!r}: shape {a64.shape}; expected ({n}, {classes}), "
                          "one row of per-class scores per instance")
    with np.errstate(over="ignore"):
        a = a64.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        what = "is not finite" if not np.isfinite(a64[i, j]) else "is outside the float32 range"
        raise AnswerError(f"{where}: field {field!r}: row {i}, class {j}: {_show(a64[i, j])} {what}")
    return a


def check_answer(labels: Any, scores: Any, *, n: int, classes: int,
                 where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An adapter's postprocessed answer, validated: (int64 labels, float32 scores or None).

    ``labels`` may be (n, classes) scores given as outputs (what a runtime returns, or a
    ``command``'s 2-D ``outputs``) when ``scores`` is None: the label is then their argmax.
    ``where`` starts the message, e.g. "submission 'x': answer to request 6".
    """
    if scores is None and _is_2d(labels):
        s = check_scores(labels, n=n, classes=classes, where=where, field="outputs")
        return s.argmax(axis=1).astype(np.int64), s
    lab = check_labels(labels, n=n, classes=classes, where=where)
    return lab, None if scores is None else check_scores(scores, n=n, classes=classes, where=where)


def _is_2d(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 2 and x.dtype.kind in "iuf"
    return (isinstance(x, list | tuple) and len(x) > 0
            and all(isinstance(r, list | tuple) and len(r) > 1 for r in x))


# ---- the timed pass against the quality pass (TEST01) -------------------------------------------------
class AnswerSampler:
    """Keeps the raw answers of up to ``cap`` queries, spread over a measured loop whose length
    is not known in advance: one query at a random place in each block of ``stride`` queries;
    when 2*cap are kept, each pair of blocks keeps one of its two (chosen at random) and the
    stride doubles. The positions come from os.urandom, so a model cannot tell which of its
    answers are checked. The loop's own cost is one integer comparison per query
    (``n == sampler.next``); ``keep`` runs only at a sampled query, after its done timestamp.
    """

    def __init__(self, cap: int = SAMPLE_QUERIES, seed: int | None = None) -> None:
        self.cap = cap
        self.rng = random.Random(os.urandom(16) if seed is None else seed)
        self.stride = 1
        self.block = 0  # the first query of the next block
        self.kept: list[tuple[int, Any, Any]] = []  # (query number, prepared input, raw answer)
        self.next = 0  # the query number to keep next

    def keep(self, n: int, prepared: Any, raw: Any) -> int:
        """Keep query n's answer; returns the next query number to keep."""
        self.kept.append((n, prepared, raw))
        if len(self.kept) >= 2 * self.cap:
            rnd = self.rng.random
            self.kept = [a if rnd() < 0.5 else b for a, b in zip(self.kept[::2], self.kept[1::2])]
            self.stride *= 2
        self.block = (n // self.stride + 1) * self.stride  # the block after n's (a batch may skip some)
        self.next = self.block + self.rng.randrange(self.stride)
        return self.next

    def samples(self) -> list[tuple[int, Any, Any]]:
        """At most ``cap`` kept answers, in query order."""
        kept = self.kept
        if len(kept) > self.cap:
            kept = sorted(self.rng.sample(kept, self.cap), key=lambda k: k[0])
        return kept


@dataclass(frozen=True)
class Sampled:
    """One kept timed-pass answer, postprocessed and validated, with the instances it covers."""

    query: int
    instances: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None


def compare_timed(sampled: list[Sampled], preds: np.ndarray, scores: np.ndarray | None, *, precision: str,
                  submission: str) -> dict[str, Any]:
    """Compare sampled timed-pass answers with the quality pass's for the same instances.

    An instance mismatches when its scores differ by more than the tolerance, or when its label
    differs and the quality pass's scores (if any) had no near-tie within the tolerance for
    the timed label. Any mismatch raises AnswerError; otherwise returns the record for run.extra.
    """
    rel = SCORE_TOLERANCE.get(precision, SCORE_TOLERANCE["int8"])
    checked = mismatched = 0
    first: int | None = None
    for s in sampled:
        idx = s.instances
        q_lab = preds[idx]
        bad = s.labels != q_lab
        if scores is not None:
            q_sc = scores[idx]
            tol = rel * np.maximum(1.0, np.abs(q_sc).max(axis=1))
            if s.scores is None:
                bad = np.ones(len(idx), dtype=bool)  # the quality pass gave scores, this answer none
            else:
                off = (np.abs(s.scores - q_sc) > tol[:, None]).any(axis=1)
                near_tie = q_sc[np.arange(len(idx)), s.labels] >= q_sc.max(axis=1) - tol
                bad = off | (bad & ~near_tie)
        checked += len(idx)
        if bad.any():
            mismatched += int(bad.sum())
            at = int(idx[int(np.flatnonzero(bad)[0])])
            first = at if first is None else min(first, at)
    if mismatched:
        raise AnswerError(f"submission {submission!r}: timed-pass outputs differ from the quality pass "
                          f"({mismatched} of {checked} sampled instances, first at instance {first})")
    return {"queries": len(sampled), "instances": checked, "mismatched": 0,
            "score_tolerance_rel": rel if scores is not None else None,
            "method": "sampled timed-pass answers vs the quality pass (after MLPerf compliance TEST01)"}
