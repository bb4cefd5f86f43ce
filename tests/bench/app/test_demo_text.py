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
