"""Options shared by several commands, declared once as annotated types.

``run`` and ``submit`` name their scenario parameters as the fields of
``heptathlon.bench.app.options.ScenarioOptions``, so both build the same ``RunOptions`` from
``ctx.params`` for the same flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Db = Annotated[Optional[str], typer.Option(
    "--db", envvar="HEPTATHLON_DB",
    help="SQLAlchemy URL of the results database (default: SQLite in $HEPTATHLON_HOME or ./.heptathlon).")]
Folder = Annotated[Path, typer.Argument(help="A submission folder with a submission.yaml.")]
Json = Annotated[bool, typer.Option("--json")]

# Scenario options shared by `run` and `submit`.
PoissonLambda = Annotated[Optional[float], typer.Option(
    "--lambda", help="poisson_batch: mean of the Poisson batch sizes (default 8).")]
Qps = Annotated[Optional[float], typer.Option(
    "--qps", help="server: target queries/s of the Poisson arrivals (default 100; with --slo-ms, where the search starts).")]
MaxBatch = Annotated[Optional[int], typer.Option(
    "--max-batch", help="server: dynamic batching, at most this many queries per call; "
                        "batch_sweep: the largest batch size swept (default 64).")]
MaxWaitMs = Annotated[Optional[float], typer.Option(
    "--max-wait-ms", help="server: how long a queued query may wait for a batch to fill.")]
SloMs = Annotated[Optional[float], typer.Option(
    "--slo-ms", help="server: find the largest QPS whose p99 latency stays within this SLO.")]
Adaptive = Annotated[bool, typer.Option(
    "--adaptive", help="After the minimums, go on until the 95% CI half-width of the median is within "
                       "--ci-target (or the cap).")]
CiTarget = Annotated[Optional[float], typer.Option(
    "--ci-target", help="Adaptive stopping: relative CI half-width (default 0.01).")]
Repeats = Annotated[Optional[int], typer.Option(
    "--repeats", help="batch_sweep: timed (and profiled) calls per batch size (default 10).")]
Runtimes = Annotated[Optional[str], typer.Option(
    "--runtimes", help="batch_sweep, torch models: comma-separated runtimes to derive and compare "
                       "(eager,torchscript,torch.compile,onnxruntime; default: all that apply).")]
SeqLengths = Annotated[Optional[str], typer.Option(
    "--seq-lengths", help="batch_sweep, text tasks (kind transformers): comma-separated sequence lengths, "
                          "each swept at every batch size (e.g. 16,64,128; default: the task's longest).")]
AllowUnsandboxed = Annotated[bool, typer.Option(
    "--allow-unsandboxed", help="Run torch/torchscript/command submissions even where bubblewrap is missing; "
                                "such runs are labelled unsandboxed. Only for code you trust.")]
WaitQuiet = Annotated[bool, typer.Option(
    "--wait-quiet", help="Before each run, wait until its cores are quiet (busy at most the contention threshold, "
                         "HEPTATHLON_CONTENTION_MAX, default 10%), as pyperf asks for a tuned machine.")]
WaitQuietTimeout = Annotated[float, typer.Option(
    "--wait-quiet-timeout", help="Seconds to wait for quiet cores before running anyway (the run is then "
                                 "likely marked contended).")]
Concurrency = Annotated[Optional[int], typer.Option(
    "--concurrency", help="generate: requests in flight together (closed loop); the submission may batch them.")]
Rate = Annotated[Optional[float], typer.Option(
    "--rate", help="generate: Poisson arrivals at this many requests/s; latency counts from the scheduled arrival.")]
MaxNewTokens = Annotated[Optional[int], typer.Option(
    "--max-new-tokens", help="generate: tokens generated per request, greedy (default 32).")]
IgnoreEos = Annotated[bool, typer.Option(
    "--ignore-eos", help="generate: decode all --max-new-tokens even past EOS, so output lengths are comparable.")]
TtftSloMs = Annotated[Optional[float], typer.Option(
    "--ttft-slo-ms", help="generate: with --tpot-slo-ms, find the largest rate whose p99 TTFT and p99 TPOT meet both.")]
TpotSloMs = Annotated[Optional[float], typer.Option(
    "--tpot-slo-ms", help="generate: the p99 time-per-output-token bound of the SLO search.")]
Sweep = Annotated[bool, typer.Option(
    "--sweep", help="generate: synchronous, then maximum throughput, then evenly spaced rates in between (guidellm).")]
