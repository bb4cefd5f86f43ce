from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from heptathlon.bench.errors import SubmissionError
from heptathlon.bench.profile import PROFILES_DIR
from heptathlon.bench.regression import DetectionConfig
from heptathlon.bench.app.suite import SuiteError, load_suite


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """suites/ beside submissions/ and a profiles dir with cpu-1core, cpu-2core and one broken file."""
    for name in ("arrests-mlp-onnx", "digits-cnn-onnx"):
        (tmp_path / "submissions" / name).mkdir(parents=True)
        (tmp_path / "submissions" / name / "submission.yaml").write_text(f"name: {name}\n")
    (tmp_path / "submissions" / "no-manifest").mkdir()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name in ("cpu-1core", "cpu-2core"):
        shutil.copy(PROFILES_DIR / f"{name}.yaml", profiles / f"{name}.yaml")
    (profiles / "broken.yaml").write_text("name: broken\ndevice: tpu\n")
    (tmp_path / "suites").mkdir()
    return tmp_path


GOOD = {
    "name": "nightly-cpu",
    "submissions": ["../submissions/arrests-mlp-onnx", "../submissions/digits-cnn-onnx"],
    "profiles": ["cpu-1core", "cpu-2core"],
    "scenarios": ["single_stream", "poisson_batch"],
    "params": {"trials": 2, "min_duration_s": 2, "min_queries": 200, "max_duration_s": 20},
    "scenario_params": {"poisson_batch": {"poisson_lambda": 4}},
    "baseline_window": 10,
    "thresholds": {"latency_p99_ms": 0.1},
    "p_value": 0.005,
    "z_threshold": 4.0,
}


def _write(tree: Path, data: dict) -> Path:
    path = tree / "suites" / "nightly.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_valid_suite_expands_to_every_series_and_carries_detection_settings(tree):
    suite = load_suite(_write(tree, GOOD), profiles_dir=tree / "profiles")
    entries = suite.entries()
    assert len(entries) == 2 * 2 * 2
    first = entries[0]
    assert first.submission_dir == (tree / "submissions" / "arrests-mlp-onnx").resolve()
    assert (first.profile, first.scenario.name, first.trials) == ("cpu-1core", "single_stream", 2)
    assert first.scenario.stop.min_queries == 200 and first.scenario.stop.max_duration_s == 20
    poisson = [e for e in entries if e.scenario.name == "poisson_batch"][0]
    assert poisson.scenario.poisson_lambda == 4
    assert first.series_params["trials"] == 2 and first.series_params["name"] == "single_stream"
    assert suite.detection_config() == DetectionConfig(window=10, min_window=5, p_value=0.005, z_threshold=4.0,
                                                       thresholds={"latency_p99_ms": 0.1})


def test_every_problem_is_listed_at_once(tree):
    bad = {
        **GOOD,
        "submissions": ["../submissions/arrests-mlp-onnx", "../submissions/missing", "../submissions/no-manifest",
                        "../submissions/arrests-mlp-onnx"],
        "profiles": ["cpu-1core", "gpu-a100", "broken"],
        "scenarios": ["single_stream", "warp_speed"],
        "scenario_params": {"server": {"qps": 10}},
        "thresholds": {"latency_p42_ms": 0.1, "latency_p50_ms": -1},
        "params": {**GOOD["params"], "trials": 0, "qps": 5},
        "p_value": 2,
        "colour": "blue",
    }
    with pytest.raises(SuiteError) as exc:
        load_suite(_write(tree, bad), profiles_dir=tree / "profiles")
    problems = exc.value.problems
    text = str(exc.value)
    expected = [
        "field 'colour': unknown key",
        "field 'p_value'",
        "field 'thresholds.latency_p50_ms'",
        "field 'params.trials'",
        "field 'params' for scenario 'single_stream': --qps applies only to the server scenario",
        "field 'submissions.1': submission folder '../submissions/missing' not found",
        "field 'submissions.2': '../submissions/no-manifest' has no submission.yaml",
        "field 'submissions': '../submissions/arrests-mlp-onnx' is listed more than once",
        "field 'profiles.1': unknown profile 'gpu-a100'",
        "field 'profiles.2':",
        "field 'scenarios.1': unknown scenario 'warp_speed'",
        "field 'scenario_params.server': 'server' is not in 'scenarios'",
        "field 'thresholds.latency_p42_ms': unknown metric",
    ]
    for piece in expected:
        assert any(piece in p for p in problems), f"missing {piece!r} in {problems}"
    assert len(problems) == len(expected)
    assert text.startswith(f"{tree / 'suites' / 'nightly.yaml'}: {len(expected)} problems in suite file")


def test_scenario_options_are_checked_by_the_scenario_rules(tree):
    bad = {**GOOD, "scenarios": ["single_stream", "offline"], "scenario_params": {},
           "params": {"min_duration_s": 30, "max_duration_s": 20, "qps": 50}}
    with pytest.raises(SuiteError) as exc:
        load_suite(_write(tree, bad), profiles_dir=tree / "profiles")
    problems = exc.value.problems
    assert len(problems) == 2
    assert all("--qps applies only to the server scenario" in p for p in problems)
    assert problems[0].startswith("field 'params' for scenario 'single_stream'")


def test_manifest_checker_problems_are_collected(tree):
    def reject_digits(folder: Path) -> None:
        if folder.name.startswith("digits"):
            raise SubmissionError(f"{folder / 'submission.yaml'}: field 'task': unknown task 'digitz'")

    with pytest.raises(SuiteError) as exc:
        load_suite(_write(tree, GOOD), profiles_dir=tree / "profiles", check_submission=reject_digits)
    assert exc.value.problems == (
        f"field 'submissions.1': {tree / 'submissions' / 'digits-cnn-onnx' / 'submission.yaml'}: "
        "field 'task': unknown task 'digitz'",)


def test_unreadable_suite_files_are_one_clear_problem(tree):
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(tree / "suites" / "nope.yaml")
    path = tree / "suites" / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(SuiteError, match="expected a mapping"):
        load_suite(path)


def test_baseline_window_below_min_baseline_is_a_problem(tree):
    with pytest.raises(SuiteError) as exc:
        load_suite(_write(tree, {**GOOD, "baseline_window": 3}), profiles_dir=tree / "profiles")
    assert exc.value.problems == ("field 'baseline_window': 3 is smaller than min_baseline (5)",)
