"""Screenshots of every dashboard page on any database (the README's are taken on the demo one).

    .venv/bin/heptathlon demo --db sqlite:////tmp/demo.db          # ~8 min on the 2-core machine
    .venv/bin/python -m tests.dashboard.screenshots --db sqlite:////tmp/demo.db [--out screenshots/demo]

Starts `heptathlon dashboard` on a free port and drives Debian's headless Chromium through the
pages, with the same helpers as tests/dashboard/test_browser.py. Output is git-ignored.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.dashboard import test_browser as TB

PAGES = {
    "1-leaderboard": ("/?task=arrests", "table.hep-leaderboard tbody tr"),
    "2-last-night": ("/last-night", "h1"),
    "3-tradeoffs": ("/tradeoffs", ".js-plotly-plot g.trace"),
    "4-hardware": ("/hardware", ".js-plotly-plot g.trace"),
    "5-framework-tax": ("/framework-tax", "h1"),
    "6-fairness": ("/fairness", ".js-plotly-plot g.trace"),
    "7-run-detail": ("/run", "h1"),
    "8-compare": ("/compare", "h1"),
    "9-history": ("/history", ".js-plotly-plot g.trace"),
}


class _Tmp:
    """The one method of pytest's tmp_path_factory that the server and browser helpers use."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="heptathlon-shots-"))

    def mktemp(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of the results database")
    ap.add_argument("--out", type=Path, default=TB.REPO / "screenshots" / "demo")
    args = ap.parse_args()
    TB.SHOTS = args.out
    tmp = _Tmp()
    server = TB._serve(args.db, tmp)
    base = next(server)
    browser_gen = TB.browser.__wrapped__(tmp)
    browser = next(browser_gen)
    try:
        for name, (path, ready) in PAGES.items():
            TB.load(browser, base + path, ready, name)
            print(f"{args.out / (name + '.png')}")
    finally:
        for g in (browser_gen, server):
            try:
                next(g)
            except StopIteration:
                pass


if __name__ == "__main__":
    main()
