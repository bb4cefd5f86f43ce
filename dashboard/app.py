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
# The Leaderboard is always the default page, at "/" (Streamlit ignores a default page's url_path,
# so a default that moved would break every shared /leaderboard link). When a nightly ran in the
# last 24 hours a fresh session opened on the bare "/" lands on Last night instead (below).
LAST_NIGHT = st.Page(VIEWS / "last_night.py", title="Last night", icon=":material/nightlight:",
                     url_path="last-night")
LEADERBOARD = st.Page(VIEWS / "leaderboard.py", title="Leaderboard", icon=":material/trophy:", default=True)
PAGES = [
    LAST_NIGHT,
    LEADERBOARD,
    st.Page(VIEWS / "tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:", url_path="tradeoffs"),
    st.Page(VIEWS / "hardware.py", title="Hardware comparison", icon=":material/memory:", url_path="hardware"),
    st.Page(VIEWS / "framework_tax.py", title="Framework tax", icon=":material/speed:", url_path="framework-tax"),
    st.Page(VIEWS / "fairness.py", title="Fairness", icon=":material/balance:", url_path="fairness"),
    st.Page(VIEWS / "generation.py", title="Generation", icon=":material/text_fields:", url_path="generation"),
    st.Page(VIEWS / "run_detail.py", title="Run detail", icon=":material/search:", url_path="run"),
    st.Page(VIEWS / "compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(VIEWS / "history.py", title="History", icon=":material/timeline:", url_path="history"),
]

page = st.navigation(PAGES)
if problem is not None:
    st.title(page.title)
    st.error(f"Cannot read the results database: {problem}")
    st.stop()

first_run = not st.session_state.get("_landed")
st.session_state["_landed"] = True
if first_run and night_first and page.url_path == LEADERBOARD.url_path and not st.query_params:
    st.switch_page(LAST_NIGHT)  # the landing view after a recent nightly; a link with settings is kept

C.sidebar(url, overview)
if overview["runs"] == 0:
    st.title(page.title)
    C.show_empty_state(url)
else:
    page.run()
