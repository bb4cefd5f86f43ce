"""Build model.onnx and tokenizer/: the same random BERT-base classifier as
../bert-base-random-transformers (same config and seed, so the same weights), exported to ONNX with
named int64 inputs (input_ids, attention_mask, token_type_ids) and dynamic batch and sequence axes.
Built only on request. Run: python build.py"""
import sys
import tempfile
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1]))
from _text import bert_base_classifier, export_onnx  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    n = bert_base_classifier(Path(tmp) / "model")
    export_onnx(Path(tmp) / "model", here / "model.onnx", tokenizer_out=here / "tokenizer")
print(f"wrote {here / 'model.onnx'} ({n:,} parameters, random weights) and {here / 'tokenizer'}")
