"""Nightly reports: a Markdown summary and a JUnit XML file per night, and the night's exit code.

Rendering is pure (results in, text out); ``write_reports`` is the only function that touches files.
JUnit XML is what CI systems (GitHub Actions, GitLab, Jenkins) already display, so each series is a
``<testsuite>``, each metric a ``<testcase>``, and regressions, drift and broken runs are
``<failure>`` elements; acknowledged ones pass with a note.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from heptathlon.bench.metrics import METRICS
from heptathlon.bench.regression import Alert, Detection, SeriesResult, alerts_from, unacknowledged

EXIT_OK = 0
# Distinct from HeptathlonError (2) and RunError (1): the night ran, and found something.
EXIT_REGRESSION = 3


def nightly_exit_code(alerts: Iterable[Alert], acknowledged: Collection[str] = ()) -> int:
    """EXIT_REGRESSION when any blocking alert (regression, drift, broke) is unacknowledged, else 0."""
    return EXIT_REGRESSION if unacknowledged(alerts, acknowledged) else EXIT_OK


@dataclass(frozen=True)
class NightlyReport:
    """One night of one suite: every series checked, and the alert keys already acknowledged."""

    suite: str
    started_at: datetime
    results: tuple[SeriesResult, ...]
    acknowledged: frozenset[str] = field(default_factory=frozenset)
    # Night (YYYY-MM-DD) of each run id, so the report can say which nights formed each baseline.
    run_dates: Mapping[str, str] = field(default_factory=dict)
    # Open blocking alerts of this suite from other nights (one line each): they fail the exit code too.
    earlier_open: tuple[str, ...] = ()

    @property
    def alerts(self) -> list[Alert]:
        return alerts_from(self.results)

    @property
    def open_alerts(self) -> list[Alert]:
        return unacknowledged(self.alerts, self.acknowledged)

    @property
    def exit_code(self) -> int:
        """EXIT_REGRESSION while any blocking alert is open: tonight's unacknowledged ones or earlier nights'."""
        if self.earlier_open:
            return EXIT_REGRESSION
        return nightly_exit_code(self.alerts, self.acknowledged)

    def is_acknowledged(self, alert: Alert) -> bool:
        return alert.key in self.acknowledged


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    junit: Path


# --------------------------------------------------------------------------- formatting helpers


# Control characters (colour codes in stderr tails) are invalid in XML 1.0 and noise in Markdown.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    return _XML_ILLEGAL.sub("?", text)


def _value(metric: str | None, v: float | None) -> str:
    if v is None:
        return "–"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "fraction":
        return f"{v:.4f}"
    return f"{v:.4g} {unit}".strip()


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:+.1%}"


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _cell(text: str) -> str:
    """Markdown table cell: one line, pipes escaped."""
    return " ".join(_x(str(text)).split()).replace("|", "\\|")


def format_alert(alert: Alert) -> str:
    """One line for a terminal (``heptathlon alerts``) or a log."""
    what = alert.metric or "run"
    bits = [f"{alert.kind.upper()} {alert.series_label} {what}"]
    if alert.rel_change is not None:
        bits.append(_pct(alert.rel_change))
    if alert.flip_rate is not None:
        bits.append(f"flip rate {alert.flip_rate:.2%}")
    bits.append(f"({alert.message})")
    return " ".join(bits) + f" [{alert.key}]"


# --------------------------------------------------------------------------- Markdown


def _changes_line(r: SeriesResult) -> str:
    return "; ".join(str(c) for c in r.context_changes) if r.context_changes else "none"


def _baseline_nights(report: NightlyReport, r: SeriesResult) -> str:
    """The nights the baseline window came from, e.g. ``2025-03-01, 2025-03-02``; long windows shortened."""
    nights = sorted({report.run_dates[i] for i in r.baseline_run_ids if i in report.run_dates})
    if not nights:
        return "–" if not r.baseline_run_ids else "?"
    return ", ".join(nights) if len(nights) <= 3 else f"{nights[0]} … {nights[-1]}"


def render_markdown(report: NightlyReport) -> str:
    """The night's report: counts first, then broke, regressions, drift, improvements and context."""
    alerts = report.alerts
    count = {k: sum(a.kind == k for a in alerts) for k in ("regression", "broke", "drift", "improvement")}
    n_ack = sum(report.is_acknowledged(a) for a in alerts)
    by_key = {(a.series_id, a.candidate_run_id, a.metric, a.kind): a for a in alerts}

    def ack(r: SeriesResult, d: Detection | None, kind: str) -> str:
        a = by_key.get((r.series.id, r.candidate_run_id, d.metric if d else None, kind))
        return " (acknowledged)" if a is not None and report.is_acknowledged(a) else ""

    lines = [
        f"# Nightly `{report.suite}`: {report.started_at:%Y-%m-%d %H:%M %Z}".rstrip(),
        "",
        f"**{'FAIL' if report.open_alerts or report.earlier_open else 'PASS'}**: "
        f"{count['regression']} regression(s), {count['broke']} broke, {count['drift']} drift, "
        f"{count['improvement']} improvement(s) across {len(report.results)} series"
        + (f"; {n_ack} acknowledged." if n_ack else "."),
        "",
    ]
    if report.earlier_open:
        lines += [f"## Still open from other nights ({len(report.earlier_open)})", "",
                  *[f"- {_cell(x)}" for x in report.earlier_open],
                  "", "Acknowledge them (`heptathlon alerts ack ID`) or mark them expected; until then the "
                      "night fails.", ""]

    broke = [r for r in report.results if r.status == "broke"]
    if broke:
        lines += ["## Broke", "", "| series | run | error | context changes |", "|---|---|---|---|"]
        lines += [f"| {_cell(r.series.label)}{ack(r, None, 'broke')} | `{r.candidate_run_id}` | {_cell(r.error or '')} "
                  f"| {_cell(_changes_line(r))} |" for r in broke]
        lines.append("")

    for kind, title in (("regression", "Regressions"), ("improvement", "Improvements")):
        rows = [(r, d) for r in report.results for d in r.of_kind(kind)]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| series | metric | baseline (mean) | tonight | change | threshold | p | z | baseline runs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {_cell(r.series.label)} | {d.metric}{ack(r, d, kind)} | {_value(d.metric, d.baseline_value)} "
                  f"| {_value(d.metric, d.candidate_value)} | {_pct(d.rel_change)} | {_num(d.threshold, '.0%')} "
                  f"| {_num(d.p_value, '.2g')} | {_num(d.z_score, '+.1f')} | {d.n_baseline} |" for r, d in rows]
        lines.append("")

    drift = [(r, d) for r in report.results for d in r.of_kind("drift")]
    if drift:
        lines += ["## Drift in predictions", "",
                  "| series | metric | last good | tonight | flip rate | note |", "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(r.series.label)} | {d.metric}{ack(r, d, 'drift')} | {_value(d.metric, d.baseline_value)} "
                  f"| {_value(d.metric, d.candidate_value)} | {_num(d.flip_rate, '.2%')} | {_cell(d.reason)} |"
                  for r, d in drift]
        lines.append("")

    flagged = [r for r in report.results if r.status in ("regressed", "drift", "improved", "broke")]
    if flagged:
        lines += ["## What changed since the baseline", ""]
        for r in flagged:
            lines.append(f"- **{r.series.label}** (`{r.candidate_run_id}`):" + ("" if r.context_changes else " no change"))
            lines += [f"  - `{c}`" for c in r.context_changes]
        lines.append("")

    nights = bool(report.run_dates)  # the nightly job knows them; a bare report may not
    lines += ["## All series", "",
              "| series | status | baseline runs |" + (" baseline nights |" if nights else "") + " note |",
              "|---|---|---|" + ("---|" if nights else "") + "---|"]
    for r in report.results:
        note = ""
        if r.status == "no_baseline":
            untested = r.of_kind("untested")
            note = untested[0].reason if untested else "fewer good nightly runs than min_baseline"
        lines.append(f"| {_cell(r.series.label)} | {r.status} | {len(r.baseline_run_ids)} |"
                     + (f" {_baseline_nights(report, r)} |" if nights else "") + f" {_cell(note)} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- JUnit XML

def _detection_text(d: Detection) -> str:
    return (f"{d.metric}: baseline {_value(d.metric, d.baseline_value)} (mean of {d.n_baseline}), "
            f"tonight {_value(d.metric, d.candidate_value)}, change {_pct(d.rel_change)}, "
            f"p={_num(d.p_value, '.3g')}, z={_num(d.z_score, '+.2f')}"
            + (f", flip rate {d.flip_rate:.2%}" if d.flip_rate is not None else "")
            + f"; {d.reason}")


def render_junit(report: NightlyReport) -> str:
    """JUnit XML: one <testsuite> per series, a "run" testcase plus one testcase per metric."""
    alerts = {(a.series_id, a.candidate_run_id, a.metric, a.kind): a for a in report.alerts}
    root = ET.Element("testsuites", name=f"heptathlon-nightly.{report.suite}",
                      timestamp=report.started_at.isoformat())
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for r in report.results:
        suite = ET.SubElement(root, "testsuite", name=r.series.label, id=r.series.id,
                              timestamp=report.started_at.isoformat())
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        classname = f"{report.suite}.{r.series.submission}.{r.series.profile}.{r.series.scenario}"

        def case(name: str, kind: str | None, message: str, details: str, metric: str | None) -> None:
            counts["tests"] += 1
            tc = ET.SubElement(suite, "testcase", classname=classname, name=name)
            a = alerts.get((r.series.id, r.candidate_run_id, metric, kind)) if kind else None
            if kind in ("regression", "drift", "broke"):
                if a is not None and report.is_acknowledged(a):
                    ET.SubElement(tc, "system-out").text = _x(f"acknowledged as expected [{a.key}]: {details}")
                else:
                    counts["failures"] += 1
                    key = f" [{a.key}]" if a is not None else ""
                    ET.SubElement(tc, "failure", type=kind, message=_x(message + key)).text = _x(details)
            elif kind == "untested":
                counts["skipped"] += 1
                ET.SubElement(tc, "skipped", message=_x(message))
            elif details:
                ET.SubElement(tc, "system-out").text = _x(details)

        changes = "\n".join(str(c) for c in r.context_changes)
        if r.status == "broke":
            case("run", "broke", f"run {r.candidate_run_id} failed: {r.error}",
                 f"{r.error}\n\nContext changes since the last run:\n{changes or 'none'}", None)
        else:
            case("run", None, "", f"run {r.candidate_run_id}", None)
        for d in r.detections:
            kind = d.kind if d.kind != "unchanged" else None
            message = f"{d.kind}: {d.metric} {_pct(d.rel_change)}" if d.kind != "untested" else d.reason
            details = _detection_text(d) + (f"\n\nContext changes:\n{changes}" if changes else "")
            case(d.metric, kind, message, details, d.metric)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("errors", "0")
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("errors", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --------------------------------------------------------------------------- files


def write_reports(report: NightlyReport, directory: Path | str) -> ReportPaths:
    """Write ``nightly-<suite>-<date>.md`` and ``.xml`` into ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"nightly-{report.suite}-{report.started_at:%Y-%m-%d}"
    paths = ReportPaths(directory / f"{stem}.md", directory / f"{stem}.xml")
    paths.markdown.write_text(render_markdown(report), encoding="utf-8")
    paths.junit.write_text(render_junit(report), encoding="utf-8")
    return paths
