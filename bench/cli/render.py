"""Output of the CLI: the two consoles, cell formatting, and the Rich progress bars."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from heptathlon.bench.run_status import RunStatus

out = Console(width=None if sys.stdout.isatty() else 200)  # stdout: tables, or JSON and nothing else
err = Console(stderr=True)  # progress and messages

SHORT = {"latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms", "throughput_sps": "samples/s",
         "accuracy": "accuracy", "peak_rss_mb": "peak RSS MB", "load_s": "load s",
         "energy_per_sample_j": "J/sample", "params": "params",
         "framework_tax": "framework tax", "batch_knee": "knee b*", "fairness_gap": "fairness gap",
         "max_qps_within_slo": "max QPS @SLO"}
OPTIONAL_COLUMNS = ["framework_tax", "batch_knee", "fairness_gap", "max_qps_within_slo"]
SHORT.update({"ttft_p50_ms": "TTFT p50 ms", "ttft_p99_ms": "TTFT p99 ms", "itl_p50_ms": "ITL p50 ms",
              "tpot_ms": "TPOT ms", "output_tokens_per_s": "tokens/s", "requests_per_s": "req/s",
              "energy_per_token_j": "J/token", "max_rate_within_slo": "max rate @SLO",
              "generation_exact_match": "exact match (fidelity)"})
# The generate scenario's tables (docs/generate.md): its own headline columns.
GENERATE_COLUMNS = ["ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "tpot_ms", "output_tokens_per_s", "requests_per_s",
                    "peak_rss_mb", "energy_per_token_j"]
GENERATE_OPTIONAL = ["max_rate_within_slo", "generation_exact_match"]


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def cell(m) -> str:
    """Value [CI], with the method marked when it is not a plain measurement."""
    if m is None:
        return "[dim]not measured[/]"
    if m.value is None:
        below = (getattr(m, "params", None) or {}).get("below_resolution")
        return "[dim]<res.[/]" if below else "[dim]n/a[/]"  # below the meter's resolution (docs/energy.md)
    s = fmt(m.value)
    if m.ci_low is not None and m.ci_high is not None and m.ci_high != m.ci_low and m.value:
        half = max(m.value - m.ci_low, m.ci_high - m.value) / abs(m.value) * 100
        s += f" [dim]±{half:.2g}%[/]"
    if m.method.startswith("estimate:"):
        s += " [yellow](est.)[/]"
    return s


def contended_mark(m) -> str:
    """' (contended 34%)' for a run whose contention_share row marks it, else ''."""
    from heptathlon.bench.contention import is_contended

    if m is None or m.value is None or not is_contended(m.params):
        return ""
    return f" [red](contended {m.value:.0%})[/]"


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal and False)


class RichProgress:
    """Progress bars for long commands: a bar per phase, one line per finished run. Implements the
    demo's ``DemoProgress`` and is the ``on_progress`` of ``execute_queued``."""

    def __init__(self) -> None:
        self._prog = progress()
        self._task = None

    def __enter__(self) -> "RichProgress":
        self._prog.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._prog.__exit__(*exc)

    def phase(self, label: str, total: int | None) -> None:
        self._task = self._prog.add_task(label, total=total)

    def step(self, description: str, completed: int | None = None, total: int | None = None) -> None:
        given = {"completed": completed, "total": total}
        self._prog.update(self._task, description=description, **{k: v for k, v in given.items() if v is not None})

    def on_run(self, done: int, outcome, run_id: str) -> None:
        if outcome is None:
            self.step(f"run {run_id[:8]}")
            return
        if not getattr(outcome, "claimed", True):  # another executor had it: not ours to run or count
            self.step(f"run {run_id[:8]}: skipped", completed=done)
            self._prog.console.print(f"[yellow]-[/] {outcome.note}")
            return
        mark = "[green]ok[/]" if outcome.status == RunStatus.SUCCEEDED else "[red]failed[/]"
        self.step(f"{outcome.submission} on {outcome.profile}/{outcome.scenario}: {mark}", completed=done)
        if outcome.error:
            self._prog.console.print(f"[red]✗[/] {outcome.error}")


STDERR_LINES = 15


def stderr_lines(tail: str | None, n: int = STDERR_LINES) -> list[str]:
    """The last ``n`` non-empty lines of a run's stderr tail."""
    return [ln for ln in (tail or "").splitlines() if ln.strip()][-n:]


def print_failure(error: str | None, stderr_tail: str | None) -> None:
    """A failed run: its one-line reason, then the last lines of the submission's stderr."""
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(error or 'run failed')}", soft_wrap=True)
    lines = stderr_lines(stderr_tail)
    if lines and stderr_tail != error:  # a failure before the worker ran has no stderr of its own
        err.print(f"[dim]last {len(lines)} line(s) of the submission's stderr:[/]")
        for ln in lines:
            err.print("  " + escape(ln), soft_wrap=True, highlight=False)


def execute_with_progress(run_ids: list[str], db: str | None, label: str = "runs", *,
                          allow_unsandboxed: bool = False, trusted: bool | None = None,
                          wait_quiet_s: float | None = None):
    from heptathlon.bench.app.service import execute_queued

    with RichProgress() as prog:
        prog.phase(label, len(run_ids))
        return execute_queued(run_ids, db=db, on_progress=prog.on_run, allow_unsandboxed=allow_unsandboxed,
                              trusted=trusted, wait_quiet_s=wait_quiet_s, on_wait=prog.step)


def print_sweep(sweep: dict) -> None:
    """A batch_sweep run's tables (latency, FT(b), knees, and the batch x sequence-length grids)."""
    from rich.markup import escape
    from rich.table import Table

    from heptathlon.bench.sweep_stats import sweep_tables

    for title, columns, rows in sweep_tables(sweep):
        out.print(f"[bold]{escape(title)}[/]")
        st = Table()
        for c in columns:
            st.add_column(c, justify="left" if c in ("runtime", "reason", "sweep stop", "FT method") else "right")
        for r in rows:  # reasons can quote a submission's own error text: no markup from it
            st.add_row(*(escape(x) for x in r))
        out.print(st)
