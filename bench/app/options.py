"""What a run request asks for, as one typed model: ``heptathlon run``, ``heptathlon submit`` and the
demo all build a ``RunOptions`` and hand it on by keyword, instead of two dozen positional values."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from heptathlon.bench.errors import OptionsError
from heptathlon.bench.scenarios import SCENARIO_OPTIONS, ScenarioConfig, make_scenario


class ScenarioOptions(BaseModel):
    """Scenario parameters from the command line; None means the scenario's own default."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    batch_size: Optional[int] = None
    full: bool = False
    min_queries: Optional[int] = None
    min_duration_s: Optional[float] = None
    max_duration_s: Optional[float] = None
    warmup_queries: Optional[int] = None
    seed: int = 0
    poisson_lambda: Optional[float] = None
    qps: Optional[float] = None
    max_batch: Optional[int] = None
    max_wait_ms: Optional[float] = None
    slo_ms: Optional[float] = None
    adaptive: bool = False
    ci_target: Optional[float] = None
    repeats: Optional[int] = None
    runtimes: Optional[tuple[str, ...]] = None
    seq_lengths: Optional[tuple[int, ...]] = None
    concurrency: Optional[int] = None
    rate: Optional[float] = None
    max_new_tokens: Optional[int] = None
    ignore_eos: Optional[bool] = None
    ttft_slo_ms: Optional[float] = None
    tpot_slo_ms: Optional[float] = None
    sweep: Optional[bool] = None

    @field_validator("ignore_eos", "sweep", mode="before")
    @classmethod
    def _flag_unset(cls, v: Any) -> Any:
        """An on/off flag left off is "not given" (None), so it is no scenario-specific option."""
        return None if v is False else v

    @field_validator("seq_lengths", mode="before")
    @classmethod
    def _split_lengths(cls, v: Any) -> Any:
        """``--seq-lengths 16,64,128`` arrives as one comma-separated string."""
        return tuple(x.strip() for x in v.split(",") if x.strip()) if isinstance(v, str) else v

    @field_validator("runtimes", mode="before")
    @classmethod
    def _split_runtimes(cls, v: Any) -> Any:
        """``--runtimes eager,onnxruntime`` arrives as one comma-separated string."""
        return tuple(r.strip() for r in v.split(",") if r.strip()) if isinstance(v, str) else v

    def configs(self, names: list[str]) -> list[ScenarioConfig]:
        """One validated config per scenario name. A scenario-specific option (--qps, --lambda, ...)
        goes to the requested scenarios it belongs to; given with none of them, it is passed on so
        that validation names the mismatch (e.g. an SLO with single_stream) before anything runs."""
        specific = {k: getattr(self, k) for k in SCENARIO_OPTIONS}
        specific |= {"adaptive": self.adaptive or None, "ci_target": self.ci_target}

        def opts_for(name: str) -> dict[str, Any]:
            kept = {}
            for k, v in specific.items():
                owners = SCENARIO_OPTIONS.get(k)
                if v is None or (owners and name not in owners and any(sc in owners for sc in names)):
                    continue
                kept[k] = v
            return kept

        return [make_scenario(n, batch_size=self.batch_size, full=self.full, seed=self.seed,
                              min_queries=self.min_queries, min_duration_s=self.min_duration_s,
                              max_duration_s=self.max_duration_s, warmup_queries=self.warmup_queries, **opts_for(n))
                for n in names]


class EnergyOptions(BaseModel):
    """The energy meters of a run (``heptathlon run`` only; queued runs keep the meters' defaults)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    idle_s: Optional[float] = None  # None: the meters' default; unset fields are not stored on the run
    country_iso: Optional[str] = None


class RunOptions(BaseModel):
    """One request: which profiles and scenarios, how many trials, and the scenario parameters."""

    model_config = ConfigDict(frozen=True)

    profiles: list[str]
    scenarios: list[str]
    trials: int = 1
    timeout_s: Optional[float] = None  # None: the queue's default per-run timeout
    energy: Optional[EnergyOptions] = None  # None: stored as no energy settings, as before this model
    scenario: ScenarioOptions = ScenarioOptions()
    allow_unsandboxed: bool = False  # code-carrying kinds without bubblewrap: run anyway, labelled
    trusted: bool = False  # --trusted: a torch/torchscript model in the measuring process (own machine only)

    @classmethod
    def from_cli(cls, params: dict[str, Any], **fields: Any) -> "RunOptions":
        """From a command's parsed parameters (named as the fields of ``ScenarioOptions``) plus the
        request-level fields. A value that does not fit becomes one line naming the option."""
        try:
            return cls(scenario=ScenarioOptions.model_validate(params), **fields)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise OptionsError(f"option {where}: {first['msg']} (got {first.get('input')!r})") from None

    def scenario_configs(self) -> list[ScenarioConfig]:
        return self.scenario.configs(self.scenarios)

    def queue_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``queue_runs`` this request sets; unset ones keep its defaults."""
        kw: dict[str, Any] = {"trials": self.trials}
        if self.timeout_s is not None:
            kw["timeout_s"] = self.timeout_s
        if self.energy is not None:
            kw["energy"] = self.energy.model_dump(exclude_none=True)
        if self.allow_unsandboxed:
            kw["extra"] = {"allow_unsandboxed": True}
        if self.trusted:
            kw["trusted"] = True
        return kw
