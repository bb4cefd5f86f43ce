from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest

from heptathlon.bench.app.report import (
    EXIT_OK,
    EXIT_REGRESSION,
    NightlyReport,
    format_alert,
    nightly_exit_code,
    render_junit,
    render_markdown,
    write_reports,
)
from heptathlon.bench.regression import ContextChange, Detection, SeriesResult, alerts_from, series_key

FP = {"cpu_model": "Xeon", "arch": "x86_64", "gpus": []}
NIGHT = datetime(2025, 3, 8, 2, 30, tzinfo=timezone.utc)
TORCH = ContextChange("software.torch", "2.13.0", "2.14.0")


def _key(sub, profile="cpu-1core"):
    return series_key(sub, "arrests", profile, "single_stream", {}, FP)


def _det(metric, kind, base, cand, rel=None, p=None, z=None, flip=None, reason=""):
    return Detection(metric, kind, base, cand, rel, p, z, 7, 0.05 if kind != "drift" else None, flip, reason)


RESULTS = (
    SeriesResult(_key("slow-mlp"), "run-slow", "regressed", (
        _det("latency_p50_ms", "regression", 1.00, 1.12, 0.12, 1e-9, 6.2, reason="+12.0% (threshold 5%)"),
        _det("throughput_sps", "unchanged", 900.0, 880.0, -0.022, 0.2, -1.0, reason="within change"),
    ), tuple(f"b{i}" for i in range(7)), (TORCH,)),
    SeriesResult(_key("crashy-cnn"), "run-crash", "broke", (), ("c1",), (),
                 error="worker exited with code 137 | out of memory\x1b[0m"),
    SeriesResult(_key("fast-mlp"), "run-fast", "improved", (
        _det("latency_p99_ms", "improvement", 3.0, 2.4, -0.2, 1e-12, -8.0, reason="-20.0%"),
    ), ("f1",), ()),
    SeriesResult(_key("numerics-mlp"), "run-drift", "drift", (
        _det("accuracy", "drift", 0.912, 0.910, -0.002, flip=0.013, reason="1.30% of predictions changed"),
    ), ("d1",), (ContextChange("machine.governor", "performance", "powersave"),)),
    SeriesResult(_key("new-mlp"), "run-new", "no_baseline", (
        _det("latency_p50_ms", "untested", None, 1.0, reason="baseline has 2 good nightly runs; 5 needed"),
    ), ("n1", "n2"), ()),
    SeriesResult(_key("steady-mlp"), "run-ok", "ok", (
        _det("latency_p50_ms", "unchanged", 1.0, 1.01, 0.01, 0.3, 0.5, reason="within change, Mann-Whitney"),
    ), tuple(f"s{i}" for i in range(7)), ()),
)


def _report(acknowledged=frozenset()):
    return NightlyReport("nightly-cpu", NIGHT, RESULTS, frozenset(acknowledged))


def test_markdown_lists_breaks_regressions_drift_improvements_and_context():
    md = render_markdown(_report())
    assert md.startswith("# Nightly `nightly-cpu`: 2025-03-08 02:30 UTC")
    assert "**FAIL**: 1 regression(s), 1 broke, 1 drift, 1 improvement(s) across 6 series." in md
    assert ("| slow-mlp/cpu-1core/single_stream | latency_p50_ms | 1 ms | 1.12 ms | +12.0% | 5% | 1e-09 | +6.2 | 7 |"
            in md)
    assert "worker exited with code 137 \\| out of memory" in md  # the pipe cannot break the table
    assert "\x1b" not in md
    assert "| numerics-mlp/cpu-1core/single_stream | accuracy | 0.9120 | 0.9100 | 1.30% |" in md
    assert "| fast-mlp/cpu-1core/single_stream | latency_p99_ms | 3 ms | 2.4 ms | -20.0% |" in md
    assert "  - `software.torch: 2.13.0 → 2.14.0`" in md
    assert "  - `machine.governor: performance → powersave`" in md
    assert "| new-mlp/cpu-1core/single_stream | no_baseline | 2 | baseline has 2 good nightly runs; 5 needed |" in md
    assert "steady-mlp" not in md.split("## All series")[0]  # quiet series only in the summary table


def test_markdown_marks_acknowledged_alerts_and_passes_when_all_are():
    blocking = [a.key for a in alerts_from(RESULTS) if a.kind != "improvement"]
    md = render_markdown(_report(blocking))
    assert md.splitlines()[2].startswith("**PASS**")
    assert "latency_p50_ms (acknowledged)" in md
    assert "3 acknowledged." in md


def _junit(report):
    return ET.fromstring(render_junit(report).encode())


def test_junit_has_a_failure_per_regression_break_and_drift():
    root = _junit(_report())
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("12", "3", "1", "0")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert len(suites) == 6
    slow = suites["slow-mlp/cpu-1core/single_stream"]
    (failure,) = slow.iter("failure")
    assert failure.get("type") == "regression"
    assert failure.get("message").startswith("regression: latency_p50_ms +12.0%")
    assert "software.torch: 2.13.0 → 2.14.0" in failure.text
    assert slow.get("failures") == "1" and slow.get("tests") == "3"
    crash = suites["crashy-cnn/cpu-1core/single_stream"]
    (broke,) = crash.iter("failure")
    assert broke.get("type") == "broke" and "137" in broke.get("message")
    assert "\x1b" not in broke.text  # control characters are not valid XML 1.0
    drift = next(suites["numerics-mlp/cpu-1core/single_stream"].iter("failure"))
    assert drift.get("type") == "drift" and "flip rate 1.30%" in drift.text
    assert not list(suites["fast-mlp/cpu-1core/single_stream"].iter("failure"))
    assert next(suites["new-mlp/cpu-1core/single_stream"].iter("skipped")).get("message").startswith("baseline has 2")
    cases = [(c.get("classname"), c.get("name")) for c in slow.iter("testcase")]
    assert cases == [("nightly-cpu.slow-mlp.cpu-1core.single_stream", n)
                     for n in ("run", "latency_p50_ms", "throughput_sps")]


def test_junit_acknowledged_regression_passes_with_a_note():
    key = next(a.key for a in alerts_from(RESULTS) if a.kind == "regression")
    root = _junit(_report({key}))
    assert root.get("failures") == "2"
    slow = next(s for s in root.findall("testsuite") if s.get("name").startswith("slow-mlp"))
    assert not list(slow.iter("failure"))
    assert any("acknowledged as expected" in (o.text or "") for o in slow.iter("system-out"))


def test_exit_code_is_nonzero_until_every_blocking_alert_is_acknowledged():
    alerts = alerts_from(RESULTS)
    blocking = [a.key for a in alerts if a.kind in ("regression", "broke", "drift")]
    assert nightly_exit_code(alerts) == EXIT_REGRESSION
    assert nightly_exit_code(alerts, blocking[:-1]) == EXIT_REGRESSION
    assert nightly_exit_code(alerts, blocking) == EXIT_OK
    improvements_only = [a for a in alerts if a.kind == "improvement"]
    assert improvements_only and nightly_exit_code(improvements_only) == EXIT_OK
    assert _report().exit_code == EXIT_REGRESSION


def test_format_alert_is_one_line_with_its_key():
    regression = alerts_from(RESULTS)[0]
    line = format_alert(regression)
    assert "\n" not in line
    assert line.startswith("REGRESSION slow-mlp/cpu-1core/single_stream latency_p50_ms +12.0%")
    assert line.endswith(f"[{regression.key}]")


def test_write_reports_names_files_by_suite_and_date(tmp_path):
    paths = write_reports(_report(), tmp_path / "reports")
    assert paths.markdown == tmp_path / "reports" / "nightly-nightly-cpu-2025-03-08.md"
    assert paths.junit.name == "nightly-nightly-cpu-2025-03-08.xml"
    assert paths.markdown.read_text(encoding="utf-8") == render_markdown(_report())
    assert ET.parse(paths.junit).getroot().get("failures") == "3"


@pytest.mark.parametrize("status", ["ok", "no_baseline"])
def test_quiet_night_passes(status):
    quiet = NightlyReport("nightly-cpu", NIGHT, tuple(r for r in RESULTS if r.status == status))
    assert quiet.exit_code == EXIT_OK
    assert _junit(quiet).get("failures") == "0"
    assert "**PASS**" in render_markdown(quiet)
