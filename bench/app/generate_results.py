"""Parent side of the generate scenario: the worker's passes, validated where they are read, turned
into metrics (bench/generation.py), sweep rows, the run's record and its raw samples.

Nothing here reads a clock: every stamp was taken by the worker's driver (runners/generate.py).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heptathlon.bench.errors import RunError
from heptathlon.bench.generation import SWEEP_METRICS, RequestTrace, sample_arrays, summarize_generation
from heptathlon.bench.metrics import MetricValue

class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TraceIn(_Strict):
    id: int
    index: int = Field(ge=0)
    arrival_ns: int
    prompt_tokens: int = Field(ge=0)
    prompt_tokens_declared: bool = False
    token_ns: list[int] = Field(min_length=1)
    final_ns: int
    output_tokens: int = Field(ge=0)
    text: Optional[str] = None
    output_ids: Optional[list[int]] = None


class PassIn(_Strict):
    mode: str
    concurrency: Optional[int] = None
    rate: Optional[float] = None
    requests: int = Field(ge=1)
    stopped_by: str
    window_ns: tuple[int, int]
    traces: list[TraceIn] = Field(min_length=1)
    point: Optional[int] = None


class GenerateIn(_Strict):
    backend: str
    headline: PassIn
    slo: Optional[dict[str, Any]] = None
    sweep: Optional[list[PassIn]] = None
    truncated_prompts: int = 0
    cohorts: Optional[list[int]] = None
    prompt_tokens_source: str = ""


def read_generate(payload: dict[str, Any] | None, run_id: str) -> GenerateIn:
    if payload is None:
        raise RunError(f"run {run_id}: the worker returned no generate passes")
    try:
        return GenerateIn.model_validate(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunError(f"run {run_id}: the worker's generate payload is malformed: {where}: {first['msg']}") from None


def traces_of(p: PassIn) -> list[RequestTrace]:
    return [RequestTrace(t.id, t.arrival_ns, t.prompt_tokens, list(t.token_ns), t.final_ns, t.output_tokens, t.text,
                         t.prompt_tokens_declared) for t in p.traces]


def pass_values(p: PassIn, seed: int = 0) -> list[MetricValue]:
    """Every generate metric of one pass except energy (which needs the meters' window)."""
    s, e = p.window_ns
    return [v for v in summarize_generation(traces_of(p), s, e, seed=seed) if v.name != "energy_per_token_j"]


def energy_per_token(energy_values: list[MetricValue], tokens: int) -> MetricValue:
    """energy_per_token_j from the meters' net energy over the headline pass's output tokens; its
    method is the meter's (a counter, or an estimate, never presented as a measurement)."""
    per = next((v for v in energy_values if v.name == "energy_per_sample_j"), None)
    if per is None or per.value is None:
        why = (per.note if per is not None else None) or "no energy counter or estimate for this run"
        return MetricValue.unavailable("energy_per_token_j", why)
    from dataclasses import replace

    return replace(per, name="energy_per_token_j", n=tokens,
                   note=f"net energy of the headline pass over its {tokens} output tokens" +
                        (f"; {per.note}" if per.note else ""))


def slo_value(slo: dict[str, Any] | None) -> MetricValue | None:
    if slo is None:
        return None
    probes = len(slo.get("probes") or [])
    if not slo.get("met"):
        return MetricValue.unavailable("max_rate_within_slo", slo.get("reason") or "SLO not met at any rate")
    return MetricValue("max_rate_within_slo", float(slo["max_rate"]), "derived:slo-search-log-bisection", n=probes,
                       note=f"largest probed Poisson rate with p99 TTFT <= {slo['ttft_ms']:g} ms and p99 TPOT <= "
                            f"{slo['tpot_ms']:g} ms, over {probes} probes of the same requests; a bound from "
                            "the probes, not a statistic (no CI)")


def sweep_rows(points: list[PassIn] | None, seed: int = 0) -> tuple[list[MetricValue], list[dict[str, Any]] | None]:
    """(detail rows per sweep point, run.extra["generate"]["sweep"])."""
    if not points:
        return [], None
    rows, record = [], []
    from dataclasses import replace

    for i, p in enumerate(points):
        vals = {v.name: v for v in pass_values(p, seed)}
        params = {"sweep": True, "sweep_point": i, "mode": p.mode, "rate": p.rate, "concurrency": p.concurrency}
        rows += [replace(vals[n], params=params) for n in SWEEP_METRICS if n in vals]
        tp = [(t.token_ns[-1] - t.token_ns[0]) / (len(t.token_ns) - 1) / 1e6 for t in p.traces if len(t.token_ns) > 1]
        rec = {"point": i, "mode": p.mode, "rate": p.rate, "concurrency": p.concurrency,
               "achieved_requests_per_s": vals["requests_per_s"].value,
               "tpot_p99_ms": float(np.percentile(tp, 99)) if tp else None}
        for n in ("output_tokens_per_s", "output_tokens_per_s_per_request", "ttft_p99_ms", "itl_p99_ms",
                  "requests_per_s", "ttft_p50_ms"):
            rec[n] = vals[n].value if n in vals else None
        record.append(rec)
    return rows, record


def generate_record(g: GenerateIn, cfg: Any) -> dict[str, Any]:
    """run.extra["generate"] (the dashboard's contract, docs/generate.md)."""
    slo = None
    if g.slo is not None:
        slo = {"ttft_ms": g.slo.get("ttft_ms"), "tpot_ms": g.slo.get("tpot_ms"), "max_rate": g.slo.get("max_rate"),
               "met": bool(g.slo.get("met")), "reason": g.slo.get("reason"),
               "throughput_rate": g.slo.get("throughput_rate"), "probes": g.slo.get("probes")}
    h = g.headline
    return {"mode": h.mode, "concurrency": h.concurrency, "rate": h.rate, "max_new_tokens": cfg.max_new_tokens,
            "ignore_eos": bool(cfg.ignore_eos), "seed": cfg.seed, "requests": len(h.traces),
            "truncated_prompts": g.truncated_prompts, "backend": g.backend, "stopped_by": h.stopped_by,
            "prompt_tokens_source": g.prompt_tokens_source, "cohorts": g.cohorts, "slo": slo,
            "greedy": True, "sweep": None,
            "outputs": [{"id": t.id, "index": t.index, "output_tokens": t.output_tokens, "text": (t.text or "")[:2000],
                         **({"output_ids": t.output_ids} if t.output_ids is not None else {})} for t in h.traces]}


def generate_samples(g: GenerateIn) -> dict[str, np.ndarray]:
    return sample_arrays(traces_of(g.headline))


def quality_values(g: GenerateIn, references: Any) -> list[MetricValue]:
    """BLEU and chrF (sacrebleu, corpus level) where the task has a reference column."""
    if references is None or getattr(references, "empty", True):
        return []
    import sacrebleu

    refs = references.iloc[:, 0].astype(str).tolist()
    hyps = [t.text or "" for t in g.headline.traces]
    ref = [refs[t.index] for t in g.headline.traces]
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    b, c = bleu.corpus_score(hyps, [ref]), chrf.corpus_score(hyps, [ref])
    return [MetricValue("bleu", float(b.score), "quality:sacrebleu-corpus-bleu", n=len(hyps),
                        note=str(bleu.get_signature())),
            MetricValue("chrf", float(c.score), "quality:sacrebleu-corpus-chrf", n=len(hyps),
                        note=str(chrf.get_signature()))]

FIDELITY_METHOD = "quality:greedy-fidelity-vs-reference"


def _sequence(o: dict[str, Any]) -> list | str:
    return o["output_ids"] if o.get("output_ids") is not None else (o.get("text") or "")


def first_divergence(a: list | str, ref: list | str) -> int:
    """Index of the first position where ``a`` differs from ``ref``; len(ref) when ``a`` equals it."""
    for i, (x, y) in enumerate(zip(a, ref)):
        if x != y:
            return i
    return min(len(a), len(ref)) if len(a) != len(ref) else len(ref)


def fidelity_values(outputs: list[dict[str, Any]], reference: list[dict[str, Any]], groups: Any, *,
                    reference_run: str, reference_profile: str, seed: int = 0) -> tuple[list[MetricValue], list]:
    """Greedy outputs against the fp32 reference profile's, prompt by prompt (token ids where both
    runs have them, else text): exact match share and first divergence, with per-group exact match
    rows so the numerics' effect per group is a hardware-induced disparity. Labelled fidelity."""
    from heptathlon.bench.fairness import DEFAULT_MIN_GROUP_SIZE, GroupMetric
    from heptathlon.bench.stats import mean_ci

    ref = {}
    for o in reference:
        ref.setdefault(int(o["index"]), _sequence(o))
    mine = {}
    for o in outputs:
        mine.setdefault(int(o["index"]), _sequence(o))
    common = sorted(set(ref) & set(mine))
    where = f"against run {reference_run[:8]} on {reference_profile} (fp32 reference), {len(common)} prompts"
    if not common:
        why = f"no prompt in common with the reference run {reference_run[:8]}"
        return [MetricValue.unavailable("generation_exact_match", why),
                MetricValue.unavailable("generation_first_divergence", why)], []
    exact = np.array([mine[i] == ref[i] for i in common], dtype=float)
    div = np.array([first_divergence(mine[i], ref[i]) for i in common], dtype=float)
    params = {"reference_run": reference_run, "reference_profile": reference_profile, "fidelity": True}
    out = []
    for name, x in (("generation_exact_match", exact), ("generation_first_divergence", div)):
        lo, hi = mean_ci(x, seed=seed) if x.size >= 2 else (None, None)
        out.append(MetricValue(name, float(x.mean()), FIDELITY_METHOD, n=int(x.size), ci_low=lo, ci_high=hi,
                               note=f"fidelity {where}, not task quality", params=params))
    rows = []
    if groups is not None and getattr(groups, "shape", (0, 0))[1] > 0:
        for attr in groups.columns:
            labels = groups[attr].astype(str).to_numpy()
            for g in sorted(set(labels[common])):
                x = exact[labels[common] == g]
                lo, hi = mean_ci(x, seed=seed) if x.size >= 2 else (float(x.mean()), float(x.mean()))
                rows.append(GroupMetric(attribute=str(attr), group=str(g), metric="generation_exact_match",
                                        value=float(x.mean()), n=int(x.size), ci_low=lo, ci_high=hi,
                                        small=bool(x.size < DEFAULT_MIN_GROUP_SIZE)))
    return out, rows
