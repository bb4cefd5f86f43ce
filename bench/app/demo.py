"""``heptathlon demo``: build the bundled examples, queue their runs (the default profiles, a batch
sweep, fairness runs under other numerics) and execute them. The CLI passes in a progress object
and prints the tables; nothing here prints."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

from heptathlon.bench.app.options import EnergyOptions, RunOptions, ScenarioOptions
from heptathlon.bench.app.service import RunOutcome, execute_queued, queue_runs
from heptathlon.bench.errors import HeptathlonError, SubmissionError
from heptathlon.bench.manifest import BUILD_STAMP, load_manifest

# The examples are not in the wheel: they live in a checkout (or a copy of its submissions/).
_CHECKOUT_EXAMPLES = Path(__file__).resolve().parents[2] / "submissions"
EXAMPLES_DIR = Path(os.environ.get("HEPTATHLON_EXAMPLES_DIR") or
                    (_CHECKOUT_EXAMPLES if _CHECKOUT_EXAMPLES.is_dir() else Path.cwd() / "submissions"))

# Fairness: torch models of group tasks also run under int8 and bf16 numerics, so that
# hardware-induced disparity against the fp32 reference is in the database after the demo.
FAIRNESS_PROFILES = ["cpu-1core-bf16", "cpu-1core-int8"]
SWEEP_TIMEOUT_S = 300.0  # b = 1..64 on every runtime that applies takes minutes on 2 cores
# Transformer examples (kind transformers, or onnx on a text task) get one short run in the demo: a
# 6-layer MiniLM loads in ~10 s and answers in ~20 ms a query on one core, so the whole matrix of
# profiles, scenarios and a sweep would add minutes. --full runs them like every other example.
TEXT_DEMO_PROFILES = 1
# The generative example's one demo run: an SLO search (its headline pass then runs at the largest
# rate within the SLO) and guidellm's sweep (synchronous, throughput, rates between), so every
# generate view of the dashboard has data (tens of seconds on the tiny GPT-2). No --concurrency:
# an SLO search varies the arrival rate, and the scenario refuses the two together.
GENERATE_DEMO = {"ttft_slo_ms": 200.0, "tpot_slo_ms": 20.0, "sweep": True}
# Each runtime's sweep, and its profiled pass, stop starting batch sizes after max_duration_s: the
# demo's 10 s would leave BERT-base's FT(8, s) and FT(16, s) unmeasured (one profiled pass at
# s = 128 takes ~170 s on one core; docs/validation/bert_base_seq_sweep.md).
TEXT_SWEEP = {"seq_lengths": (16, 64, 128), "max_batch": 16, "max_duration_s": 300.0}
TEXT_SWEEP_TIMEOUT_S = 3600.0  # BERT-base at b <= 16 x s <= 128: ~7 min per runtime on one core, four runtimes
LARGE_DIR = "large"  # submissions/large/: the BERT-base examples, built and run only with --bert-base


class DemoProgress(Protocol):
    """What the demo reports while it works (the CLI draws it as Rich progress bars)."""

    def phase(self, label: str, total: int | None) -> None:
        """A new phase of ``total`` steps begins."""

    def step(self, description: str, completed: int | None = None, total: int | None = None) -> None:
        """The current phase moved on; ``completed`` steps are done."""

    def on_run(self, done: int, outcome: RunOutcome | None, run_id: str) -> None:
        """``execute_queued``'s callback: a run starts (outcome None) or has finished."""


@dataclass
class DemoOutcome:
    outcomes: list[RunOutcome]
    fairness_submissions: list[str] = field(default_factory=list)  # names, for the disparity summary
    note: Optional[str] = None  # one line for the user, e.g. that the examples ran without bubblewrap


@dataclass(frozen=True)
class FairnessSummaryRow:
    submission: str
    grouping: str
    profile: str
    disparity: str  # "+0.012 [-0.003, +0.027]"
    largest_flip: str  # "group: 0.031"
    small_groups: str


def example_folders() -> list[Path]:
    """The bundled model examples. The calibrated busy-wait submissions are harness ground
    truth (benchmarks/harness_overhead.py), not models, so the demo leaves them out."""
    return sorted(p.parent for p in EXAMPLES_DIR.glob("*/submission.yaml") if not p.parent.name.startswith("calibrated-"))


def build_examples(folders: list[Path], rebuild: bool = False) -> None:
    """Run each example's build.py unless its artifacts are there (they are not committed).

    A ``.built`` stamp records a successful build: a ``command`` submission's manifest names
    no artifact, so a valid manifest alone does not prove that the build ran.
    """
    for f in folders:
        build = f / "build.py"
        if not build.exists():
            continue
        stamp = f / BUILD_STAMP
        try:
            load_manifest(f)
            fresh = stamp.exists() and stamp.stat().st_mtime >= build.stat().st_mtime
        except HeptathlonError:
            fresh = False
        if fresh and not rebuild:
            continue
        proc = subprocess.run([sys.executable, str(build)], cwd=f, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise SubmissionError(f"{build}: build failed with code {proc.returncode}: {last}; "
                                  f"run `python {build.name}` in {f} to see the whole output")
        stamp.write_text(proc.stdout)


def large_example_folders() -> list[Path]:
    """The BERT-base-shaped examples (~440 MB each when built): only with ``--bert-base``."""
    return sorted(p.parent for p in (EXAMPLES_DIR / LARGE_DIR).glob("*/submission.yaml"))


def is_text_example(folder: Path) -> bool:
    import yaml

    from heptathlon.bench.tasks import resolve_task

    raw = yaml.safe_load((folder / "submission.yaml").read_text()) or {}  # before its build: no artifact checks
    if (raw.get("model") or {}).get("kind") == "transformers":
        return True
    try:
        return resolve_task(str(raw.get("task")), folder).load().input_type != "features"
    except HeptathlonError:
        return False


def is_generative_example(folder: Path) -> bool:
    """An example whose task is a prompt set (bench/tasks/prompts.py): the generate scenario only."""
    import yaml

    from heptathlon.bench.tasks import resolve_task

    raw = yaml.safe_load((folder / "submission.yaml").read_text()) or {}
    try:
        return resolve_task(str(raw.get("task")), folder).generative
    except HeptathlonError:
        return False


def unsandboxed_examples_note() -> str | None:
    """Without bubblewrap, the project's own bundled examples (torch, command) still run, labelled
    unsandboxed, and this one line says so; a user's submission of those kinds is refused there
    (runners/sandbox.py). None where bubblewrap works."""
    from heptathlon.runners.sandbox import code_sandbox_refusal

    if code_sandbox_refusal("torch") is None:
        return None
    return ("bubblewrap is missing or does not work here, so the bundled torch/torchscript/command examples ran "
            "without a sandbox (labelled unsandboxed); apt-get install bubblewrap to sandbox them")


def demo_options(*, full: bool = False, unsandboxed: bool = False) -> dict[str, RunOptions]:
    """The demo's run sets, by role. Each one's scenario configs are validated here, before any
    example is built, so a bad combination fails in one line at once (not after the builds)."""
    from heptathlon.bench.profile import default_profiles

    profiles = [p.name for p in default_profiles()]
    opts = {
        "main": RunOptions(profiles=profiles, scenarios=["single_stream", "offline"],
                           scenario=ScenarioOptions(full=full), allow_unsandboxed=unsandboxed),
        # Framework tax: one batch sweep per submission (b = 1..64, every runtime that applies) on the
        # first profile. No energy meters there: the single_stream run measures that pass's energy already.
        "sweep": RunOptions(profiles=profiles[:1], scenarios=["batch_sweep"], scenario=ScenarioOptions(full=full),
                            timeout_s=SWEEP_TIMEOUT_S, energy=EnergyOptions(enabled=False),
                            allow_unsandboxed=unsandboxed),
        # Text models that get a sweep (--full, or --bert-base's large ones) sweep batch x sequence
        # length: the Framework Tax paper's central figure (FT(b, s), the dashboard's heatmap).
        "text_sweep": RunOptions(profiles=profiles[:1], scenarios=["batch_sweep"],
                                 scenario=ScenarioOptions(full=full, **TEXT_SWEEP), timeout_s=TEXT_SWEEP_TIMEOUT_S,
                                 energy=EnergyOptions(enabled=False), allow_unsandboxed=unsandboxed),
        "fair": RunOptions(profiles=FAIRNESS_PROFILES, scenarios=["single_stream"],
                           energy=EnergyOptions(enabled=False), allow_unsandboxed=unsandboxed),
        "text_short": RunOptions(profiles=profiles[:TEXT_DEMO_PROFILES], scenarios=["single_stream"],
                                 scenario=ScenarioOptions(full=full), energy=EnergyOptions(enabled=False),
                                 allow_unsandboxed=unsandboxed),
        "generate": RunOptions(profiles=profiles[:1], scenarios=["generate"],
                               scenario=ScenarioOptions(full=full, **GENERATE_DEMO), allow_unsandboxed=unsandboxed),
    }
    for o in opts.values():
        o.scenario_configs()  # raises ScenarioError naming the scenario and the option
    return opts


def queue_demo(progress: DemoProgress, *, full: bool = False, rebuild: bool = False,
               db: Optional[str] = None, bert_base: bool = False) -> tuple[list[str], list[str], str | None]:
    """Build the examples and queue the demo's runs: (run ids, fairness submissions, note)."""
    from heptathlon.bench.tasks import resolve_task

    note = unsandboxed_examples_note()
    opts = demo_options(full=full, unsandboxed=note is not None)
    folders = example_folders() + (large_example_folders() if bert_base else [])
    if not folders:  # a wheel install has no examples: they live in a checkout's submissions/
        raise SubmissionError(f"no example submissions in {EXAMPLES_DIR}; run the demo from a checkout of "
                              "heptathlon, or point HEPTATHLON_EXAMPLES_DIR at a copy of its submissions/ folder")
    progress.phase("building example models", len(folders))
    for i, f in enumerate(folders):
        progress.step(f"building {f.name}")
        build_examples([f], rebuild=rebuild)
        progress.step(f"building {f.name}", completed=i + 1)
    fair_subs, ids = [], []
    for f in folders:
        if is_generative_example(f):
            if bert_base or f.parent.name != LARGE_DIR:
                ids += _queue(f, opts["generate"], db)
            continue
        if not full and not (bert_base and f.parent.name == LARGE_DIR) and is_text_example(f):
            ids += _queue(f, opts["text_short"], db)
            continue
        ids += _queue(f, opts["main"], db)
        ids += _queue(f, opts["text_sweep"] if is_text_example(f) else opts["sweep"], db)
        m = load_manifest(f)
        if m.model.kind == "torch" and resolve_task(m.task, f).group_attributes:
            ids += _queue(f, opts["fair"], db)
            fair_subs.append(m.name)
    return ids, fair_subs, note


def run_demo(progress: DemoProgress, *, full: bool = False, rebuild: bool = False,
             db: Optional[str] = None, bert_base: bool = False) -> DemoOutcome:
    """Build the examples, queue the demo's runs and execute them (the default profiles, a batch
    sweep, fairness runs under other numerics, one generative run).

    Transformer examples get one short single_stream run unless ``full``; ``bert_base`` adds the
    BERT-base examples of submissions/large/ (their whole matrix, and a batch sweep)."""
    ids, fair_subs, note = queue_demo(progress, full=full, rebuild=rebuild, db=db, bert_base=bert_base)
    progress.phase("benchmarking", len(ids))
    return DemoOutcome(execute_queued(ids, db=db, on_progress=progress.on_run), fair_subs, note)


def _queue(folder: Path, opts: RunOptions, db: Optional[str]) -> list[str]:
    return queue_runs(folder, opts.profiles, opts.scenario_configs(), db=db, **opts.queue_kwargs())


def fairness_summary(submissions: list[str], db: Optional[str]) -> tuple[list[FairnessSummaryRow], list[str]]:
    """Each submission's disparity against the fp32 reference at its finest grouping, and a note for
    each submission whose disparity cannot be computed."""
    from heptathlon.bench.app.fairness import compute_disparity

    rows, notes = [], []
    for name in submissions:
        try:
            ft = compute_disparity(name, db=db)
        except HeptathlonError as e:
            notes.append(f"fairness for {name}: {e}")
            continue
        attr = list(ft.reports)[-1]
        for prof, _, rep in ft.reports[attr]:
            hd = rep.hw_disparity
            worst = max(rep.groups, key=lambda g: g.flip.value)
            rows.append(FairnessSummaryRow(name, attr, prof, f"{hd.value:+.3f} [{hd.ci_low:+.3f}, {hd.ci_high:+.3f}]",
                                           f"{worst.group}: {worst.flip.value:.3f}",
                                           ", ".join(g.group for g in rep.groups if g.small) or "—"))
    return rows, notes
