"""End to end: `heptathlon dashboard --db URL` serves the real app, headless Chromium loads every page.

Chromium and its WebDriver come from Debian's packages (.ci/system-deps installs them; nothing
is downloaded). Screenshots go to screenshots/dashboard/ (git-ignored).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "screenshots" / "dashboard"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1200"]

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="needs Debian's chromium and chromium-driver: run .ci/system-deps")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(augmented_db, tmp_path_factory):
    """The dashboard as users start it, on a free port; yields its base URL."""
    yield from _serve(augmented_db["url"], tmp_path_factory)


@pytest.fixture(scope="module")
def nightly_server(filled_db, tmp_path_factory):
    """The dashboard on a copy of filled_db with simulated nights (an injected regression last night)."""
    from tests.dashboard.conftest import add_nights, copy_sqlite

    url = copy_sqlite(filled_db["path"], tmp_path_factory.mktemp("nightly-browser") / "nightly.db")
    add_nights(url)
    yield from _serve(url, tmp_path_factory)


def _serve(db_url: str, tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("dashboard-server") / "server.log").open("w+")
    env = dict(os.environ, HEPTATHLON_HOME=str(tmp_path_factory.mktemp("home")),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", STREAMLIT_SERVER_FILE_WATCHER_TYPE="none")
    proc = subprocess.Popen([sys.executable, "-m", "heptathlon.bench.cli", "dashboard", "--db", db_url,
                             "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the CLI spawns streamlit
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # readiness: poll the health endpoint, bounded
            assert proc.poll() is None, f"server exited with {proc.returncode}: {_tail(log)}"
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server not healthy after 90 s: {_tail(log)}"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-2000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def load(browser, url: str, ready_css: str, name: str):
    """Open a page, wait until the script finished and ``ready_css`` is drawn, check, screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(1500, 1200)
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ready_css)))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                               '[data-testid="stApp"][data-test-script-state="notRunning"]')))
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), browser.find_element(
        By.CSS_SELECTOR, '[data-testid="stException"]').text
    height = browser.execute_script(
        "const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
        "return m ? m.scrollHeight + 150 : document.body.scrollHeight;")
    browser.set_window_size(1500, max(900, min(int(height), 6000)))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ready_css)))
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / f"{name}.png"))
    return browser


def test_every_page_renders_in_chromium(server, browser, augmented_db, filled_db):
    from selenium.webdriver.common.by import By

    # Leaderboard: the table with a row per submission, CI and method in each cell's tooltip.
    b = load(browser, f"{server}/", "table.hep-leaderboard tbody tr", "1-leaderboard")
    rows = b.find_elements(By.CSS_SELECTOR, "table.hep-leaderboard tbody tr")
    names = sorted(r.find_element(By.CSS_SELECTOR, "td.sub a").text for r in rows)
    assert names == ["arrests-mlp-command v1", "arrests-mlp-onnx v1", "broken-model v1"]  # the failure is shown
    assert b.find_elements(By.CSS_SELECTOR, "table.hep-leaderboard tr.failed td.failed")
    titles = [c.get_attribute("title") for c in rows[0].find_elements(By.CSS_SELECTOR, "td")]
    assert any("95% CI [" in t and "method: timer:perf_counter_ns" in t for t in titles)
    assert b.find_elements(By.CSS_SELECTOR, "table.hep-leaderboard td.est")  # the estimate is marked

    charts = {
        "2-tradeoffs": "/tradeoffs",
        "3-hardware": "/hardware?submission=arrests-mlp-onnx",
        "4-framework-tax": "/framework-tax?submission=arrests-mlp-onnx",
        "5-fairness": "/fairness?submission=arrests-mlp-onnx",
        "6-run-detail-failed": f"/run?run={filled_db['failed_id']}",
        "7-history": "/history?submission=arrests-mlp-onnx",
    }
    for name, path in charts.items():
        failed = name == "6-run-detail-failed"
        b = load(browser, server + path, '[data-testid="stCode"]' if failed else ".js-plotly-plot g.trace", name)
        assert b.find_element(By.CSS_SELECTOR, "h1").text.strip()
        if failed:  # the stderr tail of the crashed server
            assert "layer 2 has shape (32, 3)" in b.find_element(By.CSS_SELECTOR, '[data-testid="stCode"]').text
        else:  # a chart with drawn traces
            assert b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot g.trace")
        if name == "4-framework-tax":
            assert len(b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) == 2  # the sweep and FT(b)
    assert {p.stem for p in SHOTS.glob("*.png")} >= {"1-leaderboard", *charts}


def _choose(browser, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``, as a user does (click, click)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    box = _box(browser, label)
    box.find_element(By.CSS_SELECTOR, 'button[aria-haspopup="listbox"]').click()  # a react-aria ComboBox
    wait = WebDriverWait(browser, 30)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[role="option"]')))
    next(o for o in browser.find_elements(By.CSS_SELECTOR, '[role="option"]') if o.text.strip() == option).click()


def _box(browser, label: str):
    """The selectbox labelled ``label``, waiting (bounded) until the page has drawn it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(d):
        try:
            return next((b for b in d.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')
                         if b.find_element(By.CSS_SELECTOR, "label").text.strip() == label), False)
        except StaleElementReferenceException:
            return False

    return WebDriverWait(browser, 30).until(find, f"no selectbox labelled {label!r}")


def _selected(browser, label: str) -> str:
    from selenium.webdriver.common.by import By

    return _box(browser, label).find_element(By.CSS_SELECTOR, 'input[role="combobox"]').get_attribute("value").strip()


def _board(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.find_element(By.CSS_SELECTOR, "td.sub").text for r in
            browser.find_elements(By.CSS_SELECTOR, "table.hep-leaderboard tbody tr")]


def test_a_filter_change_goes_into_the_url_and_a_reload_restores_it(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    b = load(browser, f"{server}/", "table.hep-leaderboard tbody tr", "url-1-before")
    assert _selected(b, "Profile") == "cpu-1core"
    _choose(b, "Profile", "cpu-2core")
    WebDriverWait(b, 60).until(lambda d: "profile=cpu-2core" in d.current_url)
    _choose(b, "Rank by", "throughput_sps (samples/s)")
    WebDriverWait(b, 60).until(lambda d: "rank=throughput_sps" in d.current_url)
    load(b, b.current_url, "table.hep-leaderboard tbody tr", "url-2-changed")
    shared, rows = b.current_url, _board(b)
    # A new load of that URL (a bookmark, a link sent to someone) shows the same view.
    b.delete_all_cookies()
    load(b, shared, "table.hep-leaderboard tbody tr", "url-3-reloaded")
    assert _selected(b, "Profile") == "cpu-2core" and _selected(b, "Rank by").startswith("throughput_sps")
    assert _board(b) == rows and "profile=cpu-2core" in b.current_url and "rank=throughput_sps" in b.current_url


def test_last_night_lists_an_injected_regression(nightly_server, browser):
    from selenium.webdriver.common.by import By

    b = load(browser, f"{nightly_server}/", '[data-testid="stButton"]', "last-night")
    assert b.find_element(By.CSS_SELECTOR, "h1").text.strip() == "Last night"
    page = b.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert "regressed (1)" in page and "arrests-mlp-onnx · cpu-1core · single_stream" in page
    assert "latency_p50_ms" in page and "p < 0.0001" in page and "Acknowledge" in page
    links = [a.get_attribute("href") for a in b.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] a')]
    assert any("/history?" in h and "submission=arrests-mlp-onnx" in h for h in links if h)
