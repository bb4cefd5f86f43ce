"""The Heptathlon web leaderboard: `heptathlon dashboard [--db URL]` runs `streamlit run` on this file.

A multipage app (st.navigation); each page is a script in dashboard/views/. The database comes
from HEPTATHLON_DB (or the default ./.heptathlon/heptathlon.db) and is read only through the
cached functions of db/dashboard_queries.py.
"""

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import streamlit as st

from heptathlon.bench.errors import HeptathlonError
from heptathlon.dashboard import common as C
from heptathlon.db import dashboard_queries as DQ

st.set_page_config(page_title="Heptathlon", page_icon=":material/trophy:", layout="wide")

VIEWS = Path(str(resources.files("heptathlon.dashboard.views")))
LANDING_WINDOW = timedelta(hours=24)  # a nightly this recent makes Last night the landing page

url = C.db_url()
try:
    DQ.prepare_database(url)
    overview = DQ.load_overview(url)
    problem = None
except HeptathlonError as e:
    overview, problem = {"runs": 0, "by_status": {}, "last_nightly": None}, e


def nightly_is_recent(when) -> bool:
    if when is None:
        return False
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.now(UTC) - when <= LANDING_WINDOW


night_first = nightly_is_recent(overview.get("last_nightly"))
# The default page lives at "/" (Streamlit ignores its url_path); the other one keeps its own path.
PAGES = [
    st.Page(VIEWS / "last_night.py", title="Last night", icon=":material/nightlight:", url_path="last-night",
            default=night_first),
    st.Page(VIEWS / "leaderboard.py", title="Leaderboard", icon=":material/trophy:", url_path="leaderboard",
            default=not night_first),
    st.Page(VIEWS / "tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:", url_path="tradeoffs"),
    st.Page(VIEWS / "hardware.py", title="Hardware comparison", icon=":material/memory:", url_path="hardware"),
    st.Page(VIEWS / "framework_tax.py", title="Framework tax", icon=":material/speed:", url_path="framework-tax"),
    st.Page(VIEWS / "fairness.py", title="Fairness", icon=":material/balance:", url_path="fairness"),
    st.Page(VIEWS / "run_detail.py", title="Run detail", icon=":material/search:", url_path="run"),
    st.Page(VIEWS / "compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(VIEWS / "history.py", title="History", icon=":material/timeline:", url_path="history"),
]

page = st.navigation(PAGES)
if problem is not None:
    st.title(page.title)
    st.error(f"Cannot read the results database: {problem}")
    st.stop()

C.sidebar(url, overview)
if overview["runs"] == 0:
    st.title(page.title)
    C.show_empty_state(url)
else:
    page.run()
