"""Build the static docs site and check it in a real headless Chromium: titles, links, images, API reference."""
import functools
import http.server
import shutil
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian's chromium and chromium-driver are not installed (make test installs them)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
              "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]:
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def _pages(out):
    return sorted(p.name for p in out.glob("*.html"))


def test_every_page(site, browser):
    out, base = site
    shots = out.parent / "docs-shots"  # beside the built site, never in the repository
    shots.mkdir(exist_ok=True)
    pages = _pages(out)
    assert {"index.html", "00_ray_core.html", "03_batch_inference.html", "api.html"} <= set(pages)
    for name in pages:
        browser.get(f"{base}/{name}")
        assert browser.title and browser.title != "untitled", name
        assert browser.find_element("tag name", "h1").text.strip(), name
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.src.slice(0, 60), i.complete && i.naturalWidth > 0])")
        broken = [src for src, ok in images if not ok]
        assert not broken, f"{name}: images that did not load: {broken}"
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
        internal = {h.split("#")[0] for h in links if h and not h.startswith(("http", "mailto:", "#"))}
        missing = [h for h in internal if h and not (out / h).exists()]
        assert not missing, f"{name}: broken internal links {missing}"
        sidebar = browser.execute_script("return document.querySelectorAll('nav.sidebar a').length")
        assert sidebar == len(pages) + 1, name  # brand link + one per page
        browser.save_screenshot(str(shots / name.replace(".html", ".png")))


def test_figures_render(site, browser):
    out, base = site
    browser.get(f"{base}/00_ray_core.html")
    n = browser.execute_script("return Array.from(document.images).filter(i => i.naturalWidth > 300).length")
    assert n >= 1  # the cluster drawing
    assert "Figure:" in browser.find_element("tag name", "main").text  # captions shown


def test_api_reference_lists_exports(site, browser):
    out, base = site
    browser.get(f"{base}/api.html")
    text = browser.find_element("tag name", "main").text
    for name in ["init_ray", "tp_placement_group", "ensure_tiny_model", "make_llm", "parse_outputs",
                 "ColumnParallelLinear", "RowParallelLinear", "valid_tp_sizes", "plan", "run_batch", "EngineActor",
                 "Dispatcher", "engines_scope", "normalize_requests", "read_output", "claim_output"]:
        assert name in text, name
    assert "Answer every request of `input`" in text
