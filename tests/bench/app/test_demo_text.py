"""The demo's transformer: the MiniLM example is a text example and gets one short run; the
BERT-base examples live in submissions/large/, out of the default example list."""

from heptathlon.bench.app import demo


def test_minilm_is_a_text_example_and_bert_base_is_only_behind_the_flag():
    names = {f.name for f in demo.example_folders()}
    assert "minilm-afinn-transformers" in names
    assert not {"bert-base-random-transformers", "bert-base-random-onnx"} & names
    large = {f.name for f in demo.large_example_folders()}
    assert large == {"bert-base-random-transformers", "bert-base-random-onnx"}
    texts = {f.name for f in demo.example_folders() if demo.is_text_example(f)}
    assert texts == {"minilm-afinn-transformers"}
