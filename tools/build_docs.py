"""Build a browsable static HTML site from the notebooks without Quarto (nbconvert's HTML exporter).

    python tools/build_docs.py [--out _site]

Each notebook becomes a page with its prose, code, saved outputs and figures (nbdev directives stripped, `#| hide`
cells dropped, `#| fig-cap` shown as captions), plus an API reference page built from the exported modules'
signatures and docstrings, a sidebar ordered as nbs/sidebar.yml, and .ipynb links rewritten to the pages.
Where Quarto is installed, `make docs` runs `nbdev-docs` instead.
"""
from __future__ import annotations

import argparse
import html
import importlib
import inspect
import re
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
MODULES = ["cluster", "models", "chat", "tensor_parallel", "planner", "pipeline", "inputs", "outputs", "progress", "cli"]


def sidebar_order() -> list[str]:
    "Notebook names in the order nbs/sidebar.yml lists them."
    return re.findall(r"-\s+(\S+\.ipynb)", (NBS / "sidebar.yml").read_text())


def title_of(nb) -> str:
    "The notebook's '# Title' line."
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", c.source, re.M)
            if m:
                return m.group(1).strip()
    return "untitled"


def preprocess(nb):
    "Drop hidden cells, strip nbdev directives, turn `#| fig-cap` into a caption under the output, fix links."
    cells = []
    for c in nb.cells:
        c.metadata.pop("execution", None)  # timing that nbdev-test --save may leave; not valid nbformat
        if c.cell_type == "code":
            lines = c.source.splitlines()
            directives = [ln for ln in lines if ln.startswith("#|")]
            if any(d.split()[1:2] == ["hide"] or d.startswith("#| default_exp") and len(lines) == 1 for d in directives):
                continue
            cap = next((d.split(":", 1)[1].strip().strip('"') for d in directives if d.startswith("#| fig-cap")), None)
            c.source = "\n".join(ln for ln in lines if not ln.startswith("#|")).strip("\n")
            if not c.source:
                continue
            cells.append(c)
            if cap:
                cells.append(nbformat.v4.new_markdown_cell(f'<p class="figcaption"><em>Figure: {html.escape(cap)}</em></p>'))
        else:
            c.source = re.sub(r"\]\(([^)#]+)\.ipynb", r"](\1.html", c.source)
            c.source = c.source.replace("](../benchmarks/", "](benchmarks/")
            cells.append(c)
    nb.cells = cells
    return nb


def page(title: str, body: str, nav: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="site.css"></head>
<body><nav class="sidebar"><div class="brand"><a href="index.html">ray_vllm_tutorial</a></div>{nav}</nav>
<main>{body}</main></body></html>"""


CSS = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; display: flex; }
nav.sidebar { width: 250px; min-height: 100vh; background: #f4f5f7; padding: 1rem; box-sizing: border-box;
  position: sticky; top: 0; align-self: flex-start; }
nav.sidebar a { display: block; padding: .3rem .2rem; color: #1f3b73; text-decoration: none; }
nav.sidebar a.active { font-weight: bold; } .brand a { font-size: 1.1rem; font-weight: bold; margin-bottom: 1rem; }
main { flex: 1; max-width: 1100px; padding: 1rem 2rem; overflow-x: auto; }
main img { max-width: 100%; } .figcaption { color: #555; margin-top: -.5rem; }
pre { white-space: pre-wrap; margin: 0; }
.code_cell { margin: 1rem 0; } .input_area .highlight { background: #f6f8fa; padding: .5rem .7rem; border-radius: 4px; }
.output_subarea { border-left: 3px solid #f4a261; padding: .2rem .6rem; margin: .3rem 0 0 .3rem; overflow-x: auto; }
.output_stderr { color: #8a6d3b; font-size: .85em; }
.rendered_html table { border-collapse: collapse; } .rendered_html td, .rendered_html th { border: 1px solid #ddd; padding: .2rem .5rem; }
.anchor-link { display: none; } .api h3 { font-family: monospace; margin-bottom: .2rem; } .api p.doc { margin-top: .2rem; }
"""


def api_page() -> str:
    "Signatures and docstrings of everything each module exports."
    parts = ["<h1>API reference</h1>"]
    for m in MODULES:
        mod = importlib.import_module(f"ray_vllm_tutorial.{m}")
        parts.append(f'<section class="api" id="{m}"><h2>ray_vllm_tutorial.{m}</h2>')
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                try:
                    sig = str(inspect.signature(obj))
                except (TypeError, ValueError):
                    sig = "(...)"
                kind = "class " if inspect.isclass(obj) else ""
                doc = inspect.getdoc(obj) or ""
                parts.append(f'<h3 id="{m}.{name}">{kind}{name}{html.escape(sig)}</h3><p class="doc">{html.escape(doc.splitlines()[0] if doc else "")}</p>')
        parts.append("</section>")
    return "\n".join(parts)


def build(out: Path) -> list[Path]:
    "Write the site into `out`; return the pages written."
    out.mkdir(parents=True, exist_ok=True)
    from pygments.formatters import HtmlFormatter
    (out / "site.css").write_text(CSS + HtmlFormatter(style="default").get_style_defs(".highlight"))
    order = sidebar_order()
    nbs = {n: nbformat.read(NBS / n, as_version=4) for n in order}
    titles = {n: title_of(nb) for n, nb in nbs.items()}
    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    written = []

    def nav(active: str) -> str:
        links = [(n.replace(".ipynb", ".html"), titles[n]) for n in order] + [("api.html", "API reference")]
        return "".join(f'<a class="{"active" if h == active else ""}" href="{h}">{html.escape(t)}</a>' for h, t in links)

    for n, nb in nbs.items():
        body, _ = exporter.from_notebook_node(preprocess(nb))
        target = out / n.replace(".ipynb", ".html")
        target.write_text(page(titles[n], body, nav(target.name)))
        written.append(target)
    bench = ROOT / "benchmarks" / "results"
    for png in bench.rglob("*.png"):
        dest = out / "benchmarks" / "results" / png.relative_to(bench)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png.read_bytes())
    (out / "api.html").write_text(page("API reference", api_page(), nav("api.html")))
    written.append(out / "api.html")
    return written


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "_site"))
    a = p.parse_args()
    pages = build(Path(a.out))
    print(f"wrote {len(pages)} pages to {a.out}: " + ", ".join(x.name for x in pages))
