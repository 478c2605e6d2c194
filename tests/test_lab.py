"""`make lab`'s JupyterLab, driven as a person would: a headless server on a free local port with a token, a lesson
opened in Chromium, its first cells run with Shift+Enter from the page, their outputs checked, the server shut down."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "ray_vllm_tutorial"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
JUPYTER = Path(sys.executable).with_name("jupyter")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed"),
    pytest.mark.skipif(not Path(sys.executable).with_name("jupyter-lab").exists(),
                       reason="JupyterLab is not installed (make lab / make test install it)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kernel_is_registered_for_the_package():
    specs = json.loads(subprocess.run([str(JUPYTER), "kernelspec", "list", "--json"], capture_output=True, text=True,
                                      check=True).stdout)["kernelspecs"]
    assert KERNEL in specs, sorted(specs)
    argv0 = Path(specs[KERNEL]["spec"]["argv"][0])
    assert argv0.parent == Path(sys.executable).parent, argv0  # this environment's Python, not another one


@pytest.fixture
def lab(tmp_path):
    "JupyterLab on a copy of index.ipynb (the lesson files stay untouched), on a free port, with a token."
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
    for c in nb["cells"]:  # outputs must come from running the cells here, not from the saved file
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb["metadata"]["kernelspec"] = {"name": KERNEL, "display_name": f"Python ({KERNEL})", "language": "python"}
    work = tmp_path / "nbs"
    work.mkdir()
    (work / "index.ipynb").write_text(json.dumps(nb))
    port, token = free_port(), os.urandom(12).hex()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [str(JUPYTER), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + (["--allow-root"] if os.geteuid() == 0 else []),
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
                time.sleep(0.25)
        yield base, token, work
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server we started, and the kernels it started: nothing else
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/api/status", timeout=2)


def test_lesson_runs_from_the_page(lab, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, work = lab
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
              "--window-size=1400,1000"]:
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    wait = WebDriverWait(drv, 120)
    try:
        drv.get(f"{base}/lab/tree/index.ipynb?reset&token={token}")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
        kernel = ""
        for _ in range(240):  # the kernel named for the package starts (the notebook's kernelspec names it)
            kernel = drv.execute_script("return document.querySelector('.jp-Toolbar-kernelName')?.textContent") or ""
            if KERNEL in kernel:
                break
            time.sleep(0.25)
        assert KERNEL in kernel, kernel
        wait.until(lambda d: f"{KERNEL}) | Idle" in d.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget").text
                   or "Idle" in d.execute_script("return document.querySelector('#jp-main-statusbar')?.textContent || ''"))
        drv.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")[0].click()  # select the first cell, as a reader
        cells = drv.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
        first_code = next(i for i, c in enumerate(cells) if "jp-CodeCell" in c.get_attribute("class"))
        figure_cell = next(i for i, c in enumerate(cells)
                           if "jp-CodeCell" in c.get_attribute("class") and "draw_cluster(" in c.text)
        active = "return Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'))" \
                 ".findIndex(c => c.classList.contains('jp-mod-active'))"
        for _ in range(3 * (figure_cell + 1)):  # Shift+Enter: run this cell and move to the next, down to the figure
            if drv.execute_script(active) > figure_cell:
                break
            ActionChains(drv).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
            time.sleep(0.5)
        assert drv.execute_script(active) == figure_cell + 1
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Cell .jp-OutputArea-output img"))
        prompts = drv.execute_script(
            "return Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(p => p.textContent.trim())")
        assert prompts[0] == "[1]:" and prompts[1] == "[2]:", prompts  # import, then the figure, in order
        img = drv.execute_script(
            "const i = document.querySelector('.jp-OutputArea-output img'); return [i.naturalWidth, i.naturalHeight]")
        assert img[0] > 300 and img[1] > 100, img
        errors = drv.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert not [e.text for e in errors if "Error" in e.text]
        assert first_code < figure_cell
    finally:
        drv.save_screenshot(str(tmp_path / "lab.png"))
        print(f"\nscreenshot: {tmp_path / 'lab.png'}")
        drv.quit()
