"""The dashboard's only writes: alert status changes, through the application layer.

"Acknowledge" and "Expected" on the Last-night page call the very function behind
``heptathlon alerts ack`` / ``heptathlon alerts expected`` (heptathlon.bench.app.nightly.set_alert_status),
so both write the same rows: the alert's status and an entry in its ``detail["history"]``. This
module is the one dashboard module allowed to import the application layer (pyproject.toml's
import-linter contract names this single edge).
"""

from __future__ import annotations

from typing import Any

ACKNOWLEDGED, EXPECTED = "acknowledged", "expected"


def set_alert_status(url: str, alert_id: int, status: str) -> list[dict[str, Any]]:
    """Acknowledge an alert or mark it expected; raises heptathlon.bench.errors.AlertError on a bad id."""
    from heptathlon.bench.app.nightly import set_alert_status as app_set_alert_status

    return app_set_alert_status(url, [int(alert_id)], status)
