"""`heptathlon results` on a narrow terminal: numbers wrap, submission names never shrink to "arrests-mlp-…"
(the demo's batch_sweep table once showed five identical truncated names)."""

from __future__ import annotations

from typer.testing import CliRunner

from heptathlon.bench.cli import render
from heptathlon.bench.cli.main import app


def test_a_squeezed_results_table_keeps_every_submission_name_whole(filled_db, monkeypatch):
    monkeypatch.setattr(render.out, "width", 90)  # far narrower than the table's 13 columns need
    res = CliRunner().invoke(app, ["results", "--db", filled_db["url"]])
    assert res.exit_code == 0, res.output
    for name in ("arrests-mlp-onnx", "arrests-mlp-command", "digits-cnn-onnx"):
        assert name in res.stdout
    assert "arrests-mlp-…" not in res.stdout and "arrests-ml…" not in res.stdout
