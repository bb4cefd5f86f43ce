"""The series key of a run, like Conbench's ``history_fingerprint``.

A series is one combination of submission (by name, so a rebuilt artifact continues its series),
task, profile, scenario, parameters and machine fingerprint class (DESIGN.md, "Regression
detection"). The key is computed once, when a run's machine is known, and stored on ``run``;
nightly regression, the dashboard's history and ``heptathlon results`` read it from there.

Pure: plain values in, plain values out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from heptathlon.bench.fingerprint import fingerprint_class

# run.params keys that say how to run, not what is measured: left out of the key.
RUN_ONLY_PARAMS = ("timeout_s",)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def series_fingerprint_class(fingerprint: Mapping[str, Any]) -> str:
    """The fingerprint class of a series: ``heptathlon.bench.fingerprint``'s class, software left out.

    ``fingerprint_class`` counts major.minor library versions as part of the class, which is
    right for ranking but wrong here: a torch upgrade must show up as a regression of the same
    series, with ``software.torch: 2.13.0 → 2.14.0`` in its context diff, not silently start a
    new series that has no baseline. Blanking the software context keeps everything else
    (hardware, governor, boost, drivers) defined in one place.
    """
    return fingerprint_class({**fingerprint, "software": {}})


@dataclass(frozen=True)
class SeriesKey:
    """One series: submission, task, profile, scenario, parameters and fingerprint class."""

    submission: str
    task: str
    profile: str
    scenario: str
    params_json: str  # canonical JSON (sorted keys) so equal parameters compare and hash equal
    fingerprint_class: str

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def id(self) -> str:
        """Stable short id: the ``run.series_key`` column, the alert table and report file names."""
        parts = [self.submission, self.task, self.profile, self.scenario, self.params_json, self.fingerprint_class]
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Human-readable name: ``submission/profile/scenario``."""
        return f"{self.submission}/{self.profile}/{self.scenario}"


SERIES_KEY_LENGTH = 16  # characters of SeriesKey.id


def series_key(submission: str, task: str, profile: str, scenario: str,
               params: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> SeriesKey:
    """Build the series key from a run's fields and its full machine fingerprint."""
    return SeriesKey(submission=submission, task=task, profile=profile, scenario=scenario,
                     params_json=canonical_json(dict(params)),
                     fingerprint_class=series_fingerprint_class(fingerprint))


def series_params(run_params: Mapping[str, Any], trials: int) -> dict[str, Any]:
    """The parameters part of a run's key: its scenario config, its trial count and its meter settings.

    The same dict a nightly suite entry names its series by (``SuiteEntry.series_params``):
    ``run.params`` holds the scenario config plus ``timeout_s`` (left out: it does not change
    what is measured) and ``energy`` (``{}`` when the defaults were used, then left out).
    """
    out = {k: v for k, v in run_params.items() if k not in RUN_ONLY_PARAMS}
    if not out.get("energy"):
        out.pop("energy", None)
    return {**out, "trials": int(trials)}


@dataclass(frozen=True)
class TrialSlot:
    """The columns that place a run among the trials queued with it."""

    run_id: str
    group_id: str | None
    submission_id: int | None
    profile: str
    scenario: str
    params: Mapping[str, Any]
    trial: int


def trial_counts(slots: Iterable[TrialSlot]) -> dict[str, int]:
    """Run id -> how many trials its request queued: one more than the largest trial index beside it.

    Trials of one request are queued together (same group, submission, profile, scenario and
    parameters) with indexes 0..k-1; a retried night queues 0..k-1 again, so counting rows
    would double k while the largest index does not. A run without a group is its own request.
    """
    slots = list(slots)
    top: dict[tuple, int] = {}

    def request(x: TrialSlot) -> tuple:
        if x.group_id is None:
            return ("run", x.run_id)
        return (x.group_id, x.submission_id, x.profile, x.scenario, canonical_json(dict(x.params)))

    for x in slots:
        top[request(x)] = max(top.get(request(x), 0), int(x.trial))
    return {x.run_id: 1 + top[request(x)] for x in slots}


def run_series_key(*, submission: str, task: str, profile: str, scenario: str, run_params: Mapping[str, Any],
                   trials: int, fingerprint: Mapping[str, Any]) -> SeriesKey:
    """The series key of a stored run, from its columns (what db/series.py and migration 0003 call)."""
    return series_key(submission, task, profile, scenario, series_params(run_params, trials), fingerprint)
