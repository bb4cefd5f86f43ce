"""The CLI's batch x sequence-length grid (bench/sweep_stats.py sweep_tables): an estimated FT is marked
(est.) in the grid as in the per-batch table, and a cell no sweep reached reads "—", never a number."""

from heptathlon.bench.sweep_stats import sweep_tables


def _rt(method, taxes, lat):
    return {"median_latency_ms": lat, "framework_tax": taxes, "framework_tax_method": [method],
            "knee": {"value": 1.5, "ci_low": 1.0, "ci_high": 2.0, "flat_observed": False}}


def test_grid_marks_estimates_and_leaves_unreached_cells_blank():
    by_len = {
        "8": {"runtimes": {"command": _rt("estimate:intercept", {"1": 0.4, "2": 0.3}, {"1": 1.0, "2": 1.5})},
              "relative_to_best": {"command": {"1": 1.0, "2": 1.0}}},
        "32": {"runtimes": {"command": _rt("estimate:intercept", {"1": 0.2}, {"1": 3.0})},
               "relative_to_best": {"command": {"1": 1.0}}},
    }
    extra = {"runtimes": by_len["8"]["runtimes"], "relative_to_best": by_len["8"]["relative_to_best"],
             "sequence_length": 8, "by_sequence_length": by_len}
    tables = {t: rows for t, _cols, rows in sweep_tables(extra)}
    (grid,) = [rows for t, rows in tables.items() if t.startswith("command: FT(b, s)")]
    assert grid[0] == ["1", "0.400 (est.) · 1 ms (1.00x)", "0.200 (est.) · 3 ms (1.00x)"]
    assert grid[1] == ["2", "0.300 (est.) · 1.5 ms (1.00x)", "—"]  # s = 32 never reached b = 2
    assert grid[2] == ["knee b*", "1.5 [1.0, 2.0]", "1.5 [1.0, 2.0]"]
    assert any(t.endswith("at sequence length 8") for t in tables)
