"""What a learner sees, in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) runs 00_overview through JupyterLab's menus and must show
its figures and equations with no error; then it opens the built book (`make book`, here from
smoke runs) and every image and equation must render with a clean console. Hosts other than
127.0.0.1 resolve to nothing, so anything fetched from the network fails the test.

Skips where the browser is not installed, except with A2H_REQUIRE_BROWSER set (CI: .ci/run
installs both packages and sets it), where that fails. Screenshots: build/screenshots/ (printed).
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
OPEN = "00_overview.ipynb"


def no_browser(reason: str):
    if os.environ.get("A2H_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and A2H_REQUIRE_BROWSER is set (CI must run the browser tests; "
                    f".ci/run installs them with apt-get)")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver; CI requires them)")


@pytest.fixture(scope="module")
def driver():
    if not CHROMIUM or not CHROMEDRIVER:
        no_browser("Debian's chromium and chromium-driver are not both installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed (it is in requirements.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver: selenium never looks for (or downloads) one of its own
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(30)
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    print(f"\nscreenshots: {SHOTS}")
    yield browser
    browser.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, token: str, path: str, method: str = "GET", timeout: float = 5):
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (free port, token, own config/runtime/settings dirs, CI=1 for its
    kernels) serving a copy of the notebook, so nothing is written into notebooks/."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / OPEN, root / OPEN)
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "CI": "1", "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
           "IPYTHONDIR": str(home / "ipython")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={home / 'settings'}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(home / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                api(base, token, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start:\n{(home / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        try:  # shuts its kernels down too
            api(base, token, "/api/shutdown", "POST")
            server.wait(20)
        except Exception:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        log.close()


def wait_for(browser, condition, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        name = what.replace(" ", "_") + "_timeout.png"
        browser.save_screenshot(str(SHOTS / name))
        pytest.fail(f"timed out after {timeout} s waiting for {what} (screenshot {SHOTS / name})")


# the open notebook, read from JupyterLab's own model (exposed with --LabApp.expose_app_in_browser)
NOTEBOOK_STATE = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!panel || !panel.sessionContext || !panel.content.model) return null;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = [];
for (let i = 0; i < panel.content.model.cells.length; i++) {
  const cell = panel.content.model.cells.get(i);
  if (cell.type !== 'code') continue;
  cells.push({count: cell.executionCount, source: cell.sharedModel.getSource(),
              outputs: cell.outputs.toJSON().map(o => ({type: o.output_type, mimes: Object.keys(o.data || {}),
                                                        ename: o.ename || '', evalue: o.evalue || ''}))});
}
return {status: kernel ? kernel.status : 'none', cells: cells};
"""

IMAGES = """
return Array.from(document.querySelectorAll(arguments[0])).map(
  img => ({src: (img.getAttribute('src') || '').slice(0, 80), complete: img.complete, width: img.naturalWidth}));
"""


def test_jupyterlab_runs_the_overview_and_shows_its_figures_and_equations(lab, driver):
    from selenium.webdriver.common.by import By

    base, token = lab
    driver.get(f"{base}/lab/tree/{OPEN}?token={token}")
    state = lambda d: d.execute_script(NOTEBOOK_STATE)  # noqa: E731
    wait_for(driver, lambda d: (state(d) or {}).get("status") == "idle", 90, "the kernel to start")
    # Run > Run All Cells, as a learner does
    driver.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//*[text()='Run']]").click()
    wait_for(driver, lambda d: d.find_element(By.XPATH, "//li[contains(@class,'lm-Menu-item')]"
                                              "[.//*[normalize-space(text())='Run All Cells']]"), 10, "the Run menu").click()
    code = [c for c in state(driver)["cells"] if c["source"].strip()]
    finished = lambda d: (s := state(d))["status"] == "idle" and all(  # noqa: E731
        c["count"] is not None for c in s["cells"] if c["source"].strip()) and s
    final = wait_for(driver, finished, 120, "every cell to run")
    time.sleep(1)  # let the last outputs render
    final = state(driver)
    assert final["status"] == "idle"
    assert sorted(c["count"] for c in final["cells"] if c["source"].strip()) == list(range(1, len(code) + 1))
    errors = [o for c in final["cells"] for o in c["outputs"] if o["type"] == "error"]
    assert errors == []
    pngs = sum("image/png" in o["mimes"] for c in final["cells"] for o in c["outputs"])
    images = wait_for(driver, lambda d: (imgs := d.execute_script(IMAGES, ".jp-OutputArea-output img"))
                      and all(i["complete"] for i in imgs) and imgs, 20, "the figures to load")
    assert pngs >= 1 and len(images) == pngs and all(i["width"] > 0 for i in images), images
    maths = wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-MarkdownOutput mjx-container")),
                     30, "MathJax to typeset the markdown cells")
    assert maths >= 5  # 00's first cell alone has a dozen inline formulas ($u=\tanh(Wx)$, ...)
    driver.execute_script("document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer').scrollTop = 0")
    time.sleep(0.5)
    driver.save_screenshot(str(SHOTS / "lab_00_overview_top.png"))
    driver.execute_script("document.querySelectorAll('.jp-OutputArea-output img')[1].scrollIntoView({block: 'center'})")
    time.sleep(0.5)
    driver.save_screenshot(str(SHOTS / "lab_00_overview_figure.png"))


def test_the_book_shows_images_and_maths_with_a_clean_console(smoke_site, driver):
    from selenium.webdriver.common.by import By

    html = smoke_site[0].parent
    for page, shot in ((html / "index.html", "book_front_page.png"),
                       (html / "notebooks" / "00_overview.html", "book_00_overview.png")):
        driver.get_log("browser")  # drop earlier entries
        driver.get(page.as_uri())  # file://: what a learner gets by opening the file, no server
        images = wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete"
                          and (imgs := d.execute_script(IMAGES, "img")) and all(i["complete"] for i in imgs) and imgs,
                          30, f"the images of {page.name}")
        assert images and all(i["width"] > 0 for i in images), images
        if page.name == "00_overview.html":
            wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "span.math mjx-container")) >= 5,
                     30, "MathJax to typeset 00_overview")
            driver.execute_script("document.querySelector('img').scrollIntoView({block: 'center'})")
            time.sleep(0.3)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
        driver.save_screenshot(str(SHOTS / shot))
