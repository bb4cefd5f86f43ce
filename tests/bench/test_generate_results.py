"""The parent side of the generate scenario: fidelity to the fp32 reference (exact match, first
divergence, per-group rows) and BLEU/chrF where a task has references."""

import numpy as np
import pandas as pd
import pytest

from heptathlon.bench.app import generate_results as G


def _outs(seqs):
    return [{"index": i, "output_ids": s, "text": None} for i, s in enumerate(seqs)]


def test_first_divergence_is_the_first_differing_position():
    assert G.first_divergence([1, 2, 3], [1, 2, 3]) == 3
    assert G.first_divergence([1, 9, 3], [1, 2, 3]) == 1
    assert G.first_divergence([1, 2], [1, 2, 3]) == 2  # stopped early (EOS): diverges where it stopped
    assert G.first_divergence("abd", "abc") == 2


def test_fidelity_counts_exact_matches_and_groups_them():
    ref = _outs([[1, 2, 3, 4]] * 6)
    mine = _outs([[1, 2, 3, 4]] * 3 + [[1, 2, 9, 9]] * 2 + [[7, 2, 3, 4]])
    groups = pd.DataFrame({"language": ["en", "en", "en", "da", "da", "da"]})
    values, rows = G.fidelity_values(mine, ref, groups, reference_run="r" * 36, reference_profile="cpu-1core")
    v = {m.name: m for m in values}
    assert v["generation_exact_match"].value == pytest.approx(0.5)
    assert v["generation_first_divergence"].value == pytest.approx((4 * 3 + 2 * 2 + 0) / 6)
    assert v["generation_exact_match"].method.startswith("quality:") and "fidelity" in v["generation_exact_match"].note
    by = {r.group: r for r in rows}
    assert by["en"].value == 1.0 and by["da"].value == 0.0 and by["da"].n == 3 and by["da"].small


def test_fidelity_compares_only_prompts_both_runs_answered_and_prefers_token_ids():
    ref = [{"index": 0, "output_ids": [1, 2], "text": "xy"}, {"index": 5, "output_ids": [3], "text": "z"}]
    mine = [{"index": 0, "output_ids": [1, 2], "text": "different text, same ids"},
            {"index": 2, "output_ids": [9], "text": "q"}]
    values, _ = G.fidelity_values(mine, ref, None, reference_run="r" * 36, reference_profile="cpu-1core")
    assert values[0].value == 1.0 and values[0].n == 1
    none, _ = G.fidelity_values([{"index": 9, "text": "a"}], ref, None, reference_run="abc", reference_profile="p")
    assert none[0].value is None and "no prompt in common" in none[0].note


def test_bleu_and_chrf_come_from_sacrebleu_where_references_exist():
    g = G.GenerateIn.model_validate({
        "backend": "command",
        "headline": {"mode": "single_stream", "requests": 2, "stopped_by": "requests", "window_ns": (0, 10),
                     "traces": [{"id": i + 1, "index": i, "arrival_ns": 0, "prompt_tokens": 3, "token_ns": [1, 2],
                                 "final_ns": 3, "output_tokens": 2, "text": t}
                                for i, t in enumerate(["the cat sat on the mat", "a dog ran"])]}})
    refs = pd.DataFrame({"target": ["the cat sat on the mat", "a dog ran far away"]})
    v = {m.name: m for m in G.quality_values(g, refs)}
    import sacrebleu

    assert v["bleu"].value == pytest.approx(sacrebleu.corpus_bleu(["the cat sat on the mat", "a dog ran"],
                                                                  [list(refs["target"])]).score)
    assert 0 < v["chrf"].value < 100 and v["bleu"].method.startswith("quality:")
    assert G.quality_values(g, None) == []
    assert np.isfinite(v["bleu"].value)
