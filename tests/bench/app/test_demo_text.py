"""The demo's transformer: the MiniLM example is a text example and gets one short run; the
BERT-base examples live in submissions/large/, out of the default example list."""

from heptathlon.bench.app import demo


def test_minilm_is_a_text_example_and_bert_base_is_only_behind_the_flag():
    names = {f.name for f in demo.example_folders()}
    assert "minilm-afinn-transformers" in names
    assert not {"bert-base-random-transformers", "bert-base-random-onnx"} & names
    large = {f.name for f in demo.large_example_folders()}
    assert large == {"bert-base-random-transformers", "bert-base-random-onnx", "gpt2-small-random-transformers"}
    texts = {f.name for f in demo.example_folders() if demo.is_text_example(f)}
    assert texts == {"minilm-afinn-transformers", "gpt2-tiny-transformers"}


def test_the_causal_lm_examples_are_generative_and_run_only_the_generate_scenario():
    gens = {f.name for f in demo.example_folders() + demo.large_example_folders() if demo.is_generative_example(f)}
    assert gens == {"gpt2-tiny-transformers", "gpt2-small-random-transformers"}


def test_the_text_sweep_gives_each_runtime_time_for_the_whole_bert_base_grid():
    from heptathlon.bench.app.options import ScenarioOptions

    for full in (False, True):
        (cfg,) = ScenarioOptions(full=full, **demo.TEXT_SWEEP).configs(["batch_sweep"])
        assert cfg.seq_lengths == (16, 64, 128) and cfg.max_batch == 16
        # the demo's own 10 s budget left FT(8, s) and FT(16, s) unmeasured on BERT-base
        assert cfg.stop.max_duration_s == 300.0
    assert demo.TEXT_SWEEP_TIMEOUT_S >= 4 * 7 * 60


def test_every_demo_run_set_is_a_valid_scenario_before_anything_is_built():
    # GENERATE_DEMO once combined --concurrency with an SLO search, which the scenario refuses:
    # `heptathlon demo` (the Quick start) failed after the builds, on every machine.
    for full in (False, True):
        opts = demo.demo_options(full=full)
        (gen,) = opts["generate"].scenario_configs()
        assert gen.name == "generate" and gen.ttft_slo_ms == 200.0 and gen.sweep
        assert gen.concurrency is None
        assert all(o.scenario_configs() for o in opts.values())


class _Quiet:
    def phase(self, label, total):
        pass

    def step(self, description, completed=None, total=None):
        pass

    def on_run(self, done, outcome, run_id):
        pass


def test_the_quick_start_demo_queues_every_run_it_promises(examples, tmp_path):
    from sqlalchemy import select

    from heptathlon.db.models import Run
    from heptathlon.db.session import session_scope

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    ids, fair, _note = demo.queue_demo(_Quiet(), db=url)
    with session_scope(url) as s:
        runs = s.execute(select(Run.id, Run.scenario, Run.status, Run.submission_id)).all()
    assert sorted(r.id for r in runs) == sorted(ids) and {str(r.status) for r in runs} == {"queued"}
    scenarios = [r.scenario for r in runs]
    assert scenarios.count("generate") == 1  # the tiny GPT-2, with its SLO search and sweep
    assert "batch_sweep" in scenarios and "single_stream" in scenarios and "offline" in scenarios
    assert fair  # torch models of group tasks also run under int8 and bf16
