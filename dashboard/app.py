"""The Streamlit web leaderboard (minimal: the full multipage app is built on db/ queries)."""

import streamlit as st

from bench.service import leaderboard_groups

st.set_page_config(page_title="Heptathlon", layout="wide")
st.title("Heptathlon leaderboard")
groups = leaderboard_groups()
if not groups:
    st.info("No results yet. Submit a first model: `heptathlon run submissions/arrests-mlp-onnx`")
for g in groups:
    st.subheader(f"{g['task']} · {g['profile']} · {g['scenario']}")
    st.dataframe([{"rank": r["rank"], "submission": r["submission"],
                   **{k: v["value"] for k, v in r["metrics"].items()}} for r in g["rows"]])
