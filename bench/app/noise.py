"""Where a machine class's between-run noise model lives (heptathlon.bench.noise): one JSON file
per class under ``$HEPTATHLON_HOME/noise/``, written by ``benchmarks/ci_coverage.py --write-model``
(or :func:`save_noise_model`). A run on a class without a model keeps its sampling-only CI, and
its params say so (``ci_method``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heptathlon.bench.noise import NoiseModel
from heptathlon.bench.series import series_fingerprint_class
from heptathlon.db.session import home_dir


def noise_model_path(machine_class: str, home: Path | None = None) -> Path:
    return Path(home or home_dir()) / "noise" / f"{machine_class}.json"


def machine_class_of(fingerprint: Mapping[str, Any]) -> str:
    return series_fingerprint_class(fingerprint)


def load_noise_model(fingerprint: Mapping[str, Any] | None, home: Path | None = None) -> NoiseModel | None:
    if not fingerprint:
        return None
    path = noise_model_path(machine_class_of(fingerprint), home)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        from heptathlon.bench.errors import MetricError

        raise MetricError(f"{path}: unreadable noise model ({e}); fit it again with benchmarks/ci_coverage.py "
                          "--write-model, or delete it") from None
    return NoiseModel.from_json(raw, str(path))


def save_noise_model(model: NoiseModel, home: Path | None = None) -> Path:
    path = noise_model_path(model.machine_class, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1, sort_keys=True))
    tmp.replace(path)
    return path
