"""Nightly suite files: which submissions × profiles × scenarios to run, and how to judge them.

A suite is validated as a whole before anything runs, and :class:`SuiteError` lists every
problem at once (an operator fixing a suite at 2 a.m. should not learn of problems one by one).

```yaml
name: nightly-cpu
submissions: [../submissions/arrests-mlp-onnx]   # folders, relative to the suite file
profiles: [cpu-1core, cpu-2core]                  # names in hw_profiles/
scenarios: [single_stream, server]
params: {trials: 3, min_duration_s: 2, min_queries: 200, max_duration_s: 20}   # trials default 3, interleaved
scenario_params: {server: {qps: 50, slo_ms: 20}}  # per scenario, over params
baseline_window: 7
min_baseline: 5
thresholds: {latency_p99_ms: 0.10}                # relative, per metric; default 5%
p_value: 0.01
z_threshold: 3.0
energy: {enabled: true, idle_s: 1.0}              # optional: energy meters (part of the series when given)
timeout_s: 300                                    # optional: per-run timeout (default: heptathlon.bench.app.service's)
```
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heptathlon.bench.errors import HeptathlonError, SuiteError
from heptathlon.bench.metrics import METRICS
from heptathlon.bench.profile import load_profile
from heptathlon.bench.scenarios import SCENARIOS, ScenarioConfig, make_scenario
from heptathlon.runners.adapters.registry import validate_runtime_sections
from heptathlon.bench.regression import (
    DEFAULT_MIN_WINDOW,
    DEFAULT_P_VALUE,
    DEFAULT_REL_THRESHOLD,
    DEFAULT_WINDOW,
    DEFAULT_Z_THRESHOLD,
    DetectionConfig,
)

SUBMISSION_MANIFEST = "submission.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioParams(_Strict):
    """Options for ``heptathlon.bench.scenarios.make_scenario``; unset ones keep that function's defaults."""

    full: bool | None = None  # FULL_STOP instead of DEMO_STOP as the base stop rule
    min_queries: int | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    adaptive: bool | None = None
    ci_target: float | None = None
    warmup_queries: int | None = None
    seed: int | None = None
    batch_size: int | None = None  # fixed_batch
    poisson_lambda: float | None = None  # poisson_batch
    qps: float | None = None  # server
    max_batch: int | None = None  # server
    max_wait_ms: float | None = None  # server
    slo_ms: float | None = None  # server


NIGHTLY_DEFAULT_TRIALS = 3


class SuiteParams(ScenarioParams):
    """Parameters shared by every run of the suite; ``trials`` runs each one in k fresh processes."""

    # Nightly default: 3 trials in fresh workers, interleaved across entries (bench/app/nightly.py), so a
    # night's value carries the between-run spread and metrics without per-query samples (throughput,
    # memory, load time) have per-trial values to test.
    trials: int = Field(default=NIGHTLY_DEFAULT_TRIALS, ge=1)


class EnergyParams(_Strict):
    """Energy meter settings for every run (``heptathlon run --no-meters/--idle-seconds/--country``)."""

    enabled: bool = True
    idle_s: float = Field(default=1.0, gt=0)  # idle-power baseline measured before the timed window
    country_iso: str = Field(default="USA", pattern=r"^[A-Z]{3}$")


class SuiteSpec(_Strict):
    """The suite file as written. Names and paths are checked by :func:`find_suite_problems`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    submissions: list[str] = Field(min_length=1)
    profiles: list[str] = Field(min_length=1)
    scenarios: list[str] = Field(min_length=1)
    params: SuiteParams = Field(default_factory=SuiteParams)
    scenario_params: dict[str, ScenarioParams] = Field(default_factory=dict)  # per scenario, over params
    baseline_window: int = Field(default=DEFAULT_WINDOW, ge=2)
    min_baseline: int = Field(default=DEFAULT_MIN_WINDOW, ge=2)
    thresholds: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    default_threshold: float = Field(default=DEFAULT_REL_THRESHOLD, gt=0)
    p_value: float = Field(default=DEFAULT_P_VALUE, gt=0, lt=1)
    z_threshold: float = Field(default=DEFAULT_Z_THRESHOLD, gt=0)
    # Given, the meter settings join the series parameters: a night without meters is not
    # compared with nights that had them. Left out, runs use heptathlon.bench.app.service's defaults.
    energy: EnergyParams | None = None
    timeout_s: float | None = Field(default=None, gt=0)  # per run; not part of the series


def _scenario_options(params: ScenarioParams) -> dict[str, Any]:
    return {k: v for k, v in params.model_dump(exclude_none=True).items() if k != "trials"}


def make_suite_scenario(params: ScenarioParams, scenario_params: dict[str, ScenarioParams], name: str) -> ScenarioConfig:
    """The validated config of one scenario: ``params`` overlaid with ``scenario_params[name]``."""
    opts = _scenario_options(params)
    if name in scenario_params:
        opts.update(_scenario_options(scenario_params[name]))
    full = bool(opts.pop("full", False))
    seed = opts.pop("seed", 0)
    batch_size = opts.pop("batch_size", None)
    return make_scenario(name, batch_size=batch_size, full=full, seed=seed, **opts)


@dataclass(frozen=True)
class SuiteEntry:
    """One series to run each night: ``trials`` runs of submission × profile × scenario."""

    submission_dir: Path
    profile: str
    scenario: ScenarioConfig
    trials: int
    energy: dict[str, Any] | None = None  # meter settings for heptathlon.bench.app.service.queue_runs; None: its defaults
    timeout_s: float | None = None

    @property
    def series_params(self) -> dict[str, Any]:
        """The parameters part of the series key: the full scenario config, trials (and meters) included."""
        return {**self.scenario.to_params(), "trials": self.trials,
                **({"energy": dict(self.energy)} if self.energy is not None else {})}


@dataclass(frozen=True)
class Suite:
    """A validated suite: its spec, where it lives, and what it asks for."""

    path: Path
    spec: SuiteSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def submission_dirs(self) -> list[Path]:
        return [(self.base_dir / s).resolve() for s in self.spec.submissions]

    def scenario_configs(self) -> list[ScenarioConfig]:
        return [make_suite_scenario(self.spec.params, self.spec.scenario_params, name) for name in self.spec.scenarios]

    def entries(self) -> list[SuiteEntry]:
        """Every submission × profile × scenario, in file order."""
        scenarios = self.scenario_configs()
        energy = self.spec.energy.model_dump() if self.spec.energy is not None else None
        return [SuiteEntry(sub, prof, scen, self.spec.params.trials, energy, self.spec.timeout_s)
                for sub in self.submission_dirs() for prof in self.spec.profiles for scen in scenarios]

    def detection_config(self) -> DetectionConfig:
        s = self.spec
        return DetectionConfig(window=s.baseline_window, min_window=s.min_baseline, p_value=s.p_value,
                               z_threshold=s.z_threshold, thresholds=dict(s.thresholds),
                               default_threshold=s.default_threshold)


def _pydantic_problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        out.append(f"field '{loc}': {msg}")
    return out


def _parse_or_none(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _duplicates(items: list[str]) -> list[str]:
    return sorted(x for x, n in Counter(items).items() if n > 1)


def find_suite_problems(raw: Any, base_dir: Path, *, profiles_dir: Path | None = None,
                        check_submission: Callable[[Path], object] | None = None) -> tuple[SuiteSpec | None, list[str]]:
    """Validate a parsed suite mapping; return the spec (None if the schema failed) and every problem.

    Reference checks (submission folders, profiles, scenarios, metric names) run even when the
    schema fails elsewhere, so one pass reports everything. ``check_submission(folder)`` may
    raise a :class:`HeptathlonError` to report a folder whose manifest is invalid (pass
    ``heptathlon.bench.manifest.load_manifest``).
    """
    if not isinstance(raw, dict):
        return None, ["expected a mapping of suite fields (name, submissions, profiles, scenarios, ...)"]
    problems: list[str] = []
    spec: SuiteSpec | None = None
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as e:
        problems.extend(_pydantic_problems(e))

    def str_list(key: str) -> list[str]:
        v = raw.get(key)
        return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

    # Parsed on their own so scenario rules are checked even when another field is wrong;
    # their own schema errors are already in ``problems``.
    raw_params = raw.get("params")
    raw_params = raw_params if isinstance(raw_params, dict) else {}
    params = _parse_or_none(ScenarioParams, {k: v for k, v in raw_params.items() if k != "trials"})
    raw_sp = raw.get("scenario_params")
    raw_sp = raw_sp if isinstance(raw_sp, dict) else {}
    scenario_params = {k: v for k, v in ((k, _parse_or_none(ScenarioParams, v)) for k, v in raw_sp.items())
                       if v is not None}
    scenario_params.update({k: ScenarioParams() for k in str_list("scenarios") if k not in raw_sp})

    for i, sub in enumerate(str_list("submissions")):
        folder = (base_dir / sub).resolve()
        where = f"field 'submissions.{i}'"
        if not folder.exists():
            problems.append(f"{where}: submission folder {sub!r} not found (looked in {folder})")
        elif not folder.is_dir():
            problems.append(f"{where}: {sub!r} is not a folder")
        elif not (folder / SUBMISSION_MANIFEST).is_file():
            problems.append(f"{where}: {sub!r} has no {SUBMISSION_MANIFEST}")
        elif check_submission is not None:
            try:
                check_submission(folder)
            except HeptathlonError as e:
                problems.append(f"{where}: {e}")
    for i, prof in enumerate(str_list("profiles")):
        try:
            validate_runtime_sections(load_profile(prof, profiles_dir))  # each runtime's own section too
        except HeptathlonError as e:
            problems.append(f"field 'profiles.{i}': {e}")
    for i, scen in enumerate(str_list("scenarios")):
        if scen not in SCENARIOS:
            problems.append(f"field 'scenarios.{i}': unknown scenario {scen!r}; known scenarios: {', '.join(SCENARIOS)}")
        elif params is not None and scen in scenario_params:
            try:
                make_suite_scenario(params, scenario_params, scen)
            except HeptathlonError as e:
                problems.append(f"field 'params' for scenario {scen!r}: {e}")
    per_scenario = raw.get("scenario_params")
    if isinstance(per_scenario, dict):
        for scen in per_scenario:
            if scen not in str_list("scenarios"):
                problems.append(f"field 'scenario_params.{scen}': {scen!r} is not in 'scenarios'")
    for key in ("submissions", "profiles", "scenarios"):
        for dup in _duplicates(str_list(key)):
            problems.append(f"field '{key}': {dup!r} is listed more than once")
    thresholds = raw.get("thresholds")
    if isinstance(thresholds, dict):
        for metric in thresholds:
            if metric not in METRICS:
                problems.append(f"field 'thresholds.{metric}': unknown metric; known metrics: {', '.join(sorted(METRICS))}")
    if spec is not None and spec.baseline_window < spec.min_baseline:
        problems.append(f"field 'baseline_window': {spec.baseline_window} is smaller than "
                        f"min_baseline ({spec.min_baseline})")
    return (spec if not problems else None), problems


def load_suite(path: Path | str, *, profiles_dir: Path | None = None,
               check_submission: Callable[[Path], object] | None = None) -> Suite:
    """Read and validate a suite file; raise :class:`SuiteError` listing every problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuiteError(path, ["suite file not found"]) from None
    except yaml.YAMLError as e:
        raise SuiteError(path, [f"not valid YAML ({str(e).splitlines()[0]})"]) from None
    spec, problems = find_suite_problems(raw, path.parent, profiles_dir=profiles_dir,
                                         check_submission=check_submission)
    if problems or spec is None:
        raise SuiteError(path, problems)
    return Suite(path=path.resolve(), spec=spec)
