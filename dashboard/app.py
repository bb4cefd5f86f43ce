"""The Heptathlon web leaderboard: `heptathlon dashboard [--db URL]` runs `streamlit run` on this file.

A multipage app (st.navigation); each page is a script in dashboard/views/. The database comes
from HEPTATHLON_DB (or the default ./.heptathlon/heptathlon.db) and is read only through the
cached functions of db/dashboard_queries.py.
"""

from importlib import resources
from pathlib import Path

import streamlit as st

from heptathlon.bench.errors import HeptathlonError
from heptathlon.dashboard import common as C
from heptathlon.db import dashboard_queries as DQ

st.set_page_config(page_title="Heptathlon", page_icon=":material/trophy:", layout="wide")

VIEWS = Path(str(resources.files("heptathlon.dashboard.views")))
PAGES = [
    # The default page lives at "/" (Streamlit ignores its url_path).
    st.Page(VIEWS / "leaderboard.py", title="Leaderboard", icon=":material/trophy:", default=True),
    st.Page(VIEWS / "tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:", url_path="tradeoffs"),
    st.Page(VIEWS / "hardware.py", title="Hardware comparison", icon=":material/memory:", url_path="hardware"),
    st.Page(VIEWS / "framework_tax.py", title="Framework tax", icon=":material/speed:", url_path="framework-tax"),
    st.Page(VIEWS / "fairness.py", title="Fairness", icon=":material/balance:", url_path="fairness"),
    st.Page(VIEWS / "run_detail.py", title="Run detail", icon=":material/search:", url_path="run"),
    st.Page(VIEWS / "history.py", title="History", icon=":material/timeline:", url_path="history"),
]

page = st.navigation(PAGES)
url = C.db_url()
try:
    DQ.prepare_database(url)
    overview = DQ.load_overview(url)
except HeptathlonError as e:
    st.title(page.title)
    st.error(f"Cannot read the results database: {e}")
    st.stop()

C.sidebar(url, overview)
if overview["runs"] == 0:
    st.title(page.title)
    C.show_empty_state(url)
else:
    page.run()
