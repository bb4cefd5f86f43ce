"""Which run is a series' latest, and which stored row is a metric's headline: each rule once.

``heptathlon results`` (heptathlon.db.queries.leaderboard), the dashboard
(heptathlon.db.dashboard_queries) and the nightly job all read results through these.

- **Latest run.** The newest succeeded run of each series (``run.series_key``) per submission
  version and machine: finished last, and of runs that finished at the same instant, the one
  with the greatest id, so exactly one wins on every backend.
- **Headline row.** ``heptathlon.bench.metrics.is_detail`` rows never are; of the rest, the
  pooled-over-trials row wins over the run's own, then the first row stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from heptathlon.bench.metrics import headline_order, is_detail
from heptathlon.bench.run_status import RunStatus
from heptathlon.db.models import Measurement, Run

T = TypeVar("T")
CHUNK = 500  # bound on IN (...) list sizes


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ---- latest run ------------------------------------------------------------------------------------
# One row per series, submission version and machine: the series key holds the submission by name
# (a rebuilt artifact continues its series), while the results table lists each version and
# machine of one fingerprint class side by side.
LATEST_PARTITION = (Run.series_key, Run.submission_id, Run.machine_id)
LATEST_ORDER = (Run.finished_at.desc(), Run.id.desc())


def latest_run_ids(*conds: ColumnElement[bool]) -> Select:
    """``SELECT id`` of the latest succeeded run of each series among the runs matching ``conds``."""
    ranked = (select(Run.id.label("rid"),
                     func.row_number().over(partition_by=LATEST_PARTITION, order_by=LATEST_ORDER).label("k"))
              .where(Run.status == RunStatus.SUCCEEDED, Run.series_key.is_not(None), *conds).subquery())
    return select(ranked.c.rid).where(ranked.c.k == 1)


# ---- headline rows -----------------------------------------------------------------------------------
def pick_headlines(rows: Iterable[T], *, run_id, metric, params, row_id) -> dict[tuple[str, str], T]:
    """``{(run id, metric): headline row}`` of stored measurement rows (ORM objects or Core rows).

    The four callables read a row's run id, metric name, params and primary key.
    """
    best: dict[tuple[str, str], tuple[tuple[int, int], T]] = {}
    for row in rows:
        p = params(row)
        if is_detail(p):
            continue
        order, key = headline_order(p, row_id(row)), (run_id(row), metric(row))
        if key not in best or order < best[key][0]:
            best[key] = (order, row)
    return {k: row for k, (_, row) in best.items()}


def headline_measurements(s: Session, run_ids: Sequence[str], metric: str | None = None
                          ) -> dict[str, dict[str, Measurement]]:
    """``{run id: {metric: headline Measurement}}`` for these runs (only ``metric`` when given)."""
    rows: list[Measurement] = []
    for chunk in chunks(list(run_ids)):
        q = select(Measurement).where(Measurement.run_id.in_(chunk))
        if metric is not None:
            q = q.where(Measurement.metric == metric)
        rows += s.scalars(q)
    out: dict[str, dict[str, Measurement]] = {rid: {} for rid in run_ids}
    picked = pick_headlines(rows, run_id=lambda m: m.run_id, metric=lambda m: m.metric, params=lambda m: m.params,
                            row_id=lambda m: m.id)
    for (rid, name), m in sorted(picked.items(), key=lambda kv: kv[1].id):
        out[rid][name] = m
    return out


def trials_of_headlines(metrics: dict[str, Any]) -> int | None:
    """The trial count of a run's pooled headline values, None when none is pooled."""
    for m in metrics.values():
        if (m.params or {}).get("pooled"):
            return (m.params or {}).get("trials")
    return None
