"""The error hierarchy: each specific class is raised where its problem is found, is a
HeptathlonError (exit code 2 unless a run failed), and says in one line what to fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from heptathlon.bench import errors as E


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_every_error_class_derives_from_the_base_and_keeps_the_usage_exit_code():
    classes = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert {"SuiteError", "AlertError", "ScheduleError", "OptionsError", "MetricError", "ModelError",
            "FairnessError", "FrameworkTaxError", "RegressionError", "MeterError", "SandboxError",
            "UnknownRuntimeError"} <= {c.__name__ for c in classes}
    for c in classes:
        assert issubclass(c, E.HeptathlonError)
        assert c.exit_code == (1 if issubclass(c, E.RunError) else 2), c


def test_unknown_metric_is_a_metric_error_listing_the_known_ones():
    from heptathlon.bench.metrics import spec_for

    with pytest.raises(E.MetricError) as exc:
        spec_for("latency_p42_ms")
    assert _one_line(exc).startswith("unknown metric 'latency_p42_ms'; known metrics: accuracy, ")


def test_fairness_inputs_that_do_not_pair_are_a_fairness_error():
    from heptathlon.bench.fairness import NoGroupsError, compare_to_reference

    with pytest.raises(E.FairnessError, match="y_true has 3 examples but pred_h has 2"):
        compare_to_reference([0, 1, 1], [0, 1, 1], [0, 1], ["a", "b", "a"])
    assert issubclass(NoGroupsError, E.FairnessError)


def test_framework_tax_arithmetic_errors_are_also_value_errors():
    from heptathlon.bench.framework_tax import framework_tax

    with pytest.raises(E.FrameworkTaxError, match="compute time 2.0 s exceeds wall time 1.0 s") as exc:
        framework_tax(1.0, 2.0)
    assert isinstance(exc.value, ValueError)  # the sweep summary turns a ValueError into a reason


def test_a_bad_detection_config_is_a_regression_error():
    from heptathlon.bench.regression import DetectionConfig

    with pytest.raises(E.RegressionError, match="min_window must be at least 2"):
        DetectionConfig(min_window=1)


def test_an_unreadable_cron_is_a_schedule_error_with_an_example():
    from heptathlon.bench.app.schedule import validate_cron

    with pytest.raises(E.ScheduleError) as exc:
        validate_cron("every night")
    assert "'every night' is not a valid cron expression" in _one_line(exc) and "'30 2 * * *'" in str(exc.value)


def test_a_bad_night_date_is_an_options_error():
    from heptathlon.bench.app.nightly import parse_night

    with pytest.raises(E.OptionsError, match=r"--date '2026-13-01': expected a date as YYYY-MM-DD"):
        parse_night("2026-13-01")


def test_suite_error_lives_in_the_hierarchy_and_lists_every_problem(tmp_path):
    from heptathlon.bench.app.suite import SuiteError, load_suite

    assert SuiteError is E.SuiteError
    with pytest.raises(E.SuiteError, match="suite file not found") as exc:
        load_suite(tmp_path / "missing.yaml")
    assert exc.value.problems == ("suite file not found",)


def test_an_unknown_alert_is_an_alert_error_saying_how_to_list_them(sqlite_url):
    from heptathlon.bench.app.nightly import set_alert_status
    from heptathlon.db.session import ensure_schema

    ensure_schema(sqlite_url)
    with pytest.raises(E.AlertError) as exc:
        set_alert_status(sqlite_url, [404], "acknowledged")
    assert _one_line(exc) == "alert 404: no such alert; list them with: heptathlon alerts --all"
    with pytest.raises(E.AlertError, match="alert status 'closed'"):
        set_alert_status(sqlite_url, [404], "closed")


def test_secret_variables_for_a_sandbox_are_a_sandbox_error(tmp_path):
    from heptathlon.runners.sandbox import sandbox_command

    with pytest.raises(E.SandboxError, match=r"\['GITHUB_TOKEN'\]; drop them from the allowed env") as exc:
        sandbox_command(["true"], tmp_path, env_allow=["GITHUB_TOKEN"])
    assert isinstance(exc.value, E.ProfileError) and isinstance(exc.value, ValueError)


def test_an_inconsistent_energy_reading_is_a_meter_error():
    from heptathlon.runners.meters.base import EnergyReading

    with pytest.raises(E.MeterError, match=r"energy reading for 'cpu' \(counter:rapl\): energy -1.0 J"):
        EnergyReading(domain="cpu", energy_j=-1.0, duration_s=1.0, method="counter:rapl")


def test_a_failing_example_build_is_a_submission_error_naming_the_script(tmp_path):
    from heptathlon.bench.app.demo import build_examples

    (tmp_path / "build.py").write_text("import sys\nprint('no data here', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(E.SubmissionError) as exc:
        build_examples([tmp_path])
    msg = _one_line(exc)
    assert msg.startswith(f"{tmp_path / 'build.py'}: build failed with code 3: ['no data here']")
    assert f"run `python build.py` in {tmp_path}" in msg
    assert not (tmp_path / ".built").exists()


def test_the_cli_prints_a_long_error_on_one_line(sqlite_url):
    """stderr is not a terminal here; Rich would wrap at 80 columns without soft wrapping."""
    proc = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "fairness", "no-such-submission-" + "x" * 80,
                           "--db", sqlite_url], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: submission 'no-such-submission-xxx")
    assert proc.stderr.count("\n") == 1, proc.stderr
