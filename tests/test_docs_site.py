"""Build the docs site (tools/build_docs.py: nbdev's processed notebooks through MkDocs Material) and read it in a real
headless Chromium at 1400 and 420 px: contents, previous/next, search, API cards with parameter tables, figures,
links and anchors, nothing wider than a phone's screen. Screenshots go to a temporary folder (printed with -s)."""
import functools
import http.server
import re
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian's chromium and chromium-driver are not installed (make test installs them)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    print(r.stdout)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs-shots")  # never in the repository
    print(f"\nscreenshots: {d}")
    return d


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
              "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
              "--hide-scrollbars"]:
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def nav_pages(out: Path) -> list[str]:
    "Pages in the sidebar's order, read from the built home page (so new lessons are checked without a list here)."
    home = (out / "index.html").read_text()
    nav = home[home.index('md-nav--primary'):]
    pages = []
    for h in ["index.html"] + re.findall(r'<a href="([\w./-]+\.html)" class="md-nav__link', nav):
        if h not in pages:
            pages.append(h.removeprefix("./"))
    return pages


def test_every_page_has_contents_prev_next_and_loads_its_figures(site, browser, shots):
    out, base = site
    pages = nav_pages(out)
    assert pages[0] == "index.html" and "api.html" in pages and "ray_core.html" in pages, pages
    assert len(pages) >= 10, pages
    browser.set_window_size(1400, 1000)
    for i, name in enumerate(pages):
        browser.get(f"{base}/{name}")
        assert browser.find_element("tag name", "h1").text.strip(), name
        toc = browser.execute_script("return document.querySelectorAll('nav.md-nav--secondary a.md-nav__link').length")
        assert toc >= 2, f"{name}: no 'on this page' contents"
        prev = browser.execute_script("return document.querySelector('a.md-footer__link--prev')?.getAttribute('href')")
        nxt = browser.execute_script("return document.querySelector('a.md-footer__link--next')?.getAttribute('href')")
        assert (prev is None) == (i == 0) and (nxt is None) == (i == len(pages) - 1), (name, prev, nxt)
        if nxt:
            assert nxt.removeprefix("./") == pages[i + 1], (name, nxt)
        imgs = browser.execute_script(
            "return Array.from(document.images).filter(i => !i.src.startsWith('data:'))"
            ".map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert not [s for s, ok in imgs if not ok], f"{name}: figures that did not load: {imgs}"
        widths = set(browser.execute_script(
            "return Array.from(document.querySelectorAll('article figure img')).map(i => i.getBoundingClientRect().width)"))
        assert len(widths) <= 1, f"{name}: figures of several widths {widths}"
        caps = browser.execute_script("return Array.from(document.querySelectorAll('figcaption')).map(f => f.textContent)")
        assert not [c for c in caps if "`" in c or "**" in c], f"{name}: captions with raw Markdown {caps}"
        browser.save_screenshot(str(shots / f"1400-{name}.png"))


def test_sidebar_numbers_the_lessons(site, browser):
    out, base = site
    browser.get(f"{base}/index.html")
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('nav.md-nav--primary > ul > li > a')).map(a => a.textContent.trim())")
    assert "Home" in labels and "API reference" in labels, labels
    assert any(re.match(r"^0\. ", s) for s in labels) and any(re.match(r"^2b\. ", s) for s in labels), labels


def test_no_broken_links_or_anchors(site):
    out, _ = site
    pages = [p for p in out.glob("*.html") if p.name != "404.html"]  # 404.html links from the site's root, by design
    ids = {p.name: set(re.findall(r'\bid="([^"]+)"', p.read_text())) for p in pages}
    broken = []
    for p in pages:
        for href in re.findall(r'\bhref="([^"]+)"', p.read_text()):
            if href.startswith(("http:", "https:", "mailto:", "javascript:")):
                continue
            path, frag = urldefrag(href)
            target = (p.parent / path).resolve() if path else p
            if not target.exists():
                broken.append(f"{p.name} -> {href}")
            elif frag and target.suffix == ".html" and frag not in ids.get(target.name, set()):
                broken.append(f"{p.name} -> {href} (no such anchor)")
    assert not broken, broken[:20]


def test_lessons_link_to_each_other(site):
    "Every 'lesson 2' / 'lesson 02e' in the prose that names another page is a link to it."
    out, _ = site
    numbered = {re.sub(r"^0+(?=\d)", "", m.group(1)) for p in out.glob("*.html")
                if (m := re.search(r"<h1[^>]*>(\d+[a-z]?)\. ", p.read_text()))}
    assert {"0", "1", "2", "3"} <= numbered, numbered
    linked, bare = 0, []
    for p in out.glob("*.html"):
        article = p.read_text().split("<article", 1)[-1].split("</article>", 1)[0]
        linked += len(re.findall(r"<a [^>]*>[^<]*\b[Ll]esson \d+[a-z]?\b[^<]*</a>", article))
        text = re.sub(r"<(a|code|pre|h1)\b.*?</\1>", "", article, flags=re.S)
        me = (re.search(r"<h1[^>]*>(\d+[a-z]?)\. ", p.read_text()) or [None, None])[1]
        bare += [f"{p.name}: {m.group(0)}" for m in re.finditer(r"\b[Ll]esson (\d+[a-z]?)\b", text)
                 if re.sub(r"^0+(?=\d)", "", m.group(1)) in numbered - {me}]
    assert linked >= 10 and not bare, (linked, bare)


def test_search_finds_a_lesson(site, browser):
    out, base = site
    browser.set_window_size(1400, 1000)
    browser.get(f"{base}/index.html")
    browser.execute_script("document.querySelector('label.md-search__icon, label[for=__search]')?.click()")
    box = browser.find_element("css selector", "input.md-search__input")
    box.send_keys("placement group")
    hits = []
    for _ in range(60):
        hits = browser.execute_script(
            "return Array.from(document.querySelectorAll('.md-search-result__item a')).map(a => a.getAttribute('href'))")
        if hits:
            break
        time.sleep(0.25)
    assert any(urlparse(h).path.rsplit("/", 1)[-1] == "ray_core.html" for h in hits), hits


def test_api_page_cards(site, browser, shots):
    out, base = site
    browser.set_window_size(1400, 1000)
    browser.get(f"{base}/api.html")
    text = browser.find_element("tag name", "article").text
    for name in ["init_ray", "tp_placement_group", "ensure_tiny_model", "make_llm", "parse_outputs",
                 "ColumnParallelLinear", "RowParallelLinear", "plan", "run_batch", "EngineActor", "Dispatcher",
                 "normalize_requests", "read_output", "claim_output"]:
        assert name in text, name
    params = browser.execute_script("""
        const h = document.getElementById('run_batch'); let e = h.nextElementSibling;
        while (e && !e.matches('div.params')) e = e.nextElementSibling;
        return Array.from(e.querySelectorAll('tbody tr td:first-child')).map(td => td.textContent.trim())""")
    assert {"input", "output", "tensor_parallel_size", "replicas", "sampling", "engine_kwargs"} <= set(params), params
    assert "str | None" in text and "'str | None'" not in text  # real types, not quoted
    prose = browser.execute_script(
        "return Array.from(document.querySelectorAll('article p, article td')).map(e => e.textContent).join(' ')")
    assert "`" not in prose  # docstrings and parameter comments rendered as Markdown
    taught = browser.execute_script("""
        const h = document.getElementById('run_batch'); let e = h.nextElementSibling;
        while (e && !(e.tagName == 'P' && e.textContent.startsWith('Taught in'))) e = e.nextElementSibling;
        return e.querySelector('a').getAttribute('href')""")
    assert taught.startswith("batch_inference.html#"), taught
    browser.execute_script("document.getElementById('run_batch').scrollIntoView()")
    browser.save_screenshot(str(shots / "1400-api-run_batch.png"))


def test_captions_are_markdown(site, browser):
    out, base = site
    browser.get(f"{base}/index.html")
    caps = browser.execute_script("return Array.from(document.querySelectorAll('figcaption')).map(f => f.textContent)")
    assert caps and not any("`" in c for c in caps), caps
    alts = browser.execute_script("return Array.from(document.querySelectorAll('figure img')).map(i => i.alt)")
    assert all(len(a) > 20 for a in alts), alts


def test_phone_width_nothing_overflows(site, browser, shots):
    out, base = site
    browser.set_window_size(420, 900)
    wide = []
    for name in nav_pages(out):
        browser.get(f"{base}/{name}")
        w, vw = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        if w > vw:
            wide.append((name, w, vw))
        browser.save_screenshot(str(shots / f"420-{name}.png"))
    browser.set_window_size(1400, 1000)
    assert not wide, wide
