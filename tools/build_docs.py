"""Build the docs site without Quarto: nbdev's processed notebooks, written as Markdown, built by MkDocs Material.

    python tools/build_docs.py [--out _site]

Where Quarto is installed, `make docs` runs `nbdev-docs` instead; this script is the fallback, and what the browser
test (tests/test_docs_site.py) checks.

1. Every notebook that nbs/sidebar.yml lists (read at build time, in its order) goes through nbdev's own docs
   processors (`FilterDefaults`: hidden cells dropped, a `show_doc` card added after each exported definition, links
   to the API added, `#| exports` source folded). Only nbdev's `exec_show_docs` is swapped out: it would run every
   cell with an import (engines, clusters), so here the `show_doc` cells alone are evaluated, against the module the
   notebook exports to. Cards are nbdev's `BasicMarkdownRenderer` plus a parameter table from the docments.
2. Each processed notebook is written as a Markdown page: code, saved outputs (text, tables, figures written as PNG
   files), `#| fig-cap` captions rendered as Markdown under their figure, `.ipynb` links pointing to the pages, and
   "lesson 2", "the previous lesson" etc. linked to the page they mean.
3. An API reference page lists every module's exports with the same cards, each linked to the lesson section that
   teaches it.
4. MkDocs with the Material theme builds the site (`--strict`: a broken link or anchor fails the build). Material
   gives search (in the browser, from a prebuilt index), an "on this page" contents, previous/next links, a layout that
   folds the navigation into a menu on phones, and code blocks that scroll sideways; no web fonts are fetched. Search
   needs the site served over HTTP (`python -m http.server -d _site`), not opened as a file.
"""
from __future__ import annotations

import argparse
import base64
import html
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
PKG = "ray_vllm_tutorial"
CODE_WIDTH = 100  # lessons' code lines stay readable at this width; longer ones scroll


# ---------------------------------------------------------------------------------------------------------- pages
def sidebar_order() -> list[str]:
    "Notebook (or Markdown) names in the order nbs/sidebar.yml lists them, read now: other lessons come and go."
    return re.findall(r"^\s*-\s+(?:href:\s*)?[\"']?([\w./-]+\.(?:ipynb|md|qmd))", (NBS / "sidebar.yml").read_text(), re.M)


def page_name(nb: str) -> str:
    "The page a notebook becomes, as nbdev names it: the number prefix dropped (`01_vllm_chat` -> `vllm_chat`)."
    stem = Path(nb).stem
    return "index" if stem == "index" else re.sub(r"^\d+[a-z]?_", "", stem)


def lesson_number(nb: str) -> str | None:
    "`02b_tp_in_vllm.ipynb` -> '2b'; None for pages without a number (home, glossary)."
    m = re.match(r"^(\d+)([a-z]?)_", Path(nb).name)
    return f"{int(m.group(1))}{m.group(2)}" if m else None


def title_of(cells) -> str:
    for c in cells:
        if c.cell_type == "markdown" and (m := re.search(r"^#\s+(.+)$", c.source, re.M)):
            return m.group(1).strip()
    return "untitled"


# ---------------------------------------------------------------------------------------------------- API cards
def _card_renderer():
    "nbdev's `show_doc` card (source link, heading, signature, full docstring) with a parameter table added."
    from fastcore.docments import DocmentText, _type_str, docments, empty
    from nbdev.showdoc import BasicMarkdownRenderer

    class Signature(DocmentText):
        "The signature alone (the table below it has the parameters' comments), types evaluated, not quoted."
        def __init__(self, obj, **kw):
            super().__init__(obj, **kw)
            self.dm = {k: v for k, v in docments(obj, full=True, eval_str=True).items()
                       if k != "self" and not k.startswith("_ray")}
            for v in self.dm.values():  # `**kwargs` without an annotation comes back as None
                if v.get("anno", empty) is None:
                    v["anno"] = empty

        params = property(lambda self: [(f, None) for f, _ in DocmentText.params.fget(self)])

        def _fmt_param(self, nm, p):  # the signature's types as short as the table's
            return re.sub(rf"\b{PKG}\.\w+\.", "", DocmentText._fmt_param(self, nm, p))
        _ret_str = property(lambda self: re.sub(rf"\b{PKG}\.\w+\.|\s*#.*$", "", DocmentText._ret_str.fget(self)))

    def typ(t) -> str:
        return re.sub(rf"\b{PKG}\.\w+\.", "", _type_str(t))

    def code(s) -> str:  # a table cell's code: `|` in a type would split the cell
        return "<code>" + html.escape(str(s)).replace("|", "&#124;") + "</code>"

    def cell(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    class Card(BasicMarkdownRenderer):
        def __init__(self, sym, **kw):
            if meta := getattr(sym, "__ray_metadata__", None):  # a @ray.remote class: document the class itself
                sym, kw["name"] = meta.modified_class.__mro__[1], meta.class_name
            super().__init__(sym, maxline=CODE_WIDTH - 20, **kw)
            if isinstance(self.dm, DocmentText):
                for k in [k for k in self.dm.dm if k.startswith("_ray")]:  # Ray's tracing argument
                    del self.dm.dm[k]

        def _repr_markdown_(self):
            md = super()._repr_markdown_()
            try:
                sig = Signature(self.sym, maxline=CODE_WIDTH - 20, docstring=False)
                md = md.replace(f"```python\n{self.dm}\n```", f"```python\n{sig}\n```")
                dm = docments(self.sym, full=True, eval_str=True)
            except Exception:  # builtins and other symbols without a Python signature
                return md
            try:  # nbdev's lookup has no line number for some symbols: link to the line that defines it
                line = inspect.getsourcelines(inspect.unwrap(self.sym))[1]
                md = md.replace("#LNone", f"#L{line}")
            except (TypeError, OSError):
                md = md.replace("#LNone", "")
            rows = [(k, v) for k, v in dm.items() if k not in ("self", "return") and not k.startswith("_ray")]
            if rows and any(v.get("docment") for _, v in rows):
                tbl = ["| Parameter | Type | Default | Details |", "|---|---|---|---|"]
                for k, v in rows:
                    anno = code(typ(v["anno"])) if v.get("anno", empty) not in (empty, None) else ""
                    dflt = code(repr(v["default"])) if v.get("default", empty) is not empty else ""
                    tbl.append(f"| `{k}` | {anno} | {dflt} | {cell(v.get('docment') or '')} |")
                ret = dm.get("return", {})
                if ret.get("anno", empty) is not empty and not inspect.isclass(self.sym):
                    tbl.append(f"| **returns** | {code(typ(ret['anno']))} | | {cell(ret.get('docment') or '')} |")
                md += '\n\n<div class="params" markdown>\n\n' + "\n".join(tbl) + "\n\n</div>"
            return md

    return Card


def _processors(card, module_ns: dict):
    "nbdev's docs processors, with `exec_show_docs` replaced by one that evaluates only the `show_doc` cells."
    from nbdev.process import Processor
    from nbdev.processors import FilterDefaults, _default_exp, _is_showdoc, exec_show_docs

    class eval_show_docs(Processor):
        def begin(self):
            mod = _default_exp(self.nb)
            self.ns = dict(module_ns)
            if mod:
                self.ns.update(vars(importlib.import_module(f"{PKG}.{mod}")))

        def __call__(self, cell):
            if not _is_showdoc(cell):
                return
            call = re.search(r"^show_doc\((.+)\)\s*$", cell.source, re.M)
            try:
                sym = eval(call.group(1).split(",")[0], self.ns)
            except Exception as e:  # a show_doc of something defined only in the notebook
                print(f"  show_doc skipped ({type(e).__name__}: {e}): {cell.source!r}", file=sys.stderr)
                return
            cell.outputs = [dict(output_type="display_data", metadata={}, data={"text/markdown": card(sym)._repr_markdown_()})]

    procs = [eval_show_docs if p is exec_show_docs else p for p in FilterDefaults().procs()]
    return procs


# ------------------------------------------------------------------------------------------- notebook -> Markdown
_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
DEBRIS = re.compile(r"(\w+Warning\b|\.venv/|site-packages/|\d+%\|[^\n]*\||it/s\]|Traceback \(most recent)")
_LINK = re.compile(r"(`[^`\n]*`|\[[^\]\n]*\]\([^)\n]*\)|<[^>\n]+>)")  # spans not to touch when adding links


def _fence(text: str, lang: str = "") -> str:
    ticks = "```" if "```" not in text else "~~~~"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _plain(md: str) -> str:
    "Caption text without Markdown, for alt text."
    return re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", md).replace('"', "'").strip()


class Site:
    def __init__(self, out: Path, work: Path):
        self.out, self.docs = out, work / "docs"
        self.order = sidebar_order()
        # notebooks not (yet) in the sidebar are built too, so links to them work; they are left out of the navigation
        self.extra = [p.name for p in sorted(NBS.glob("*.ipynb")) if p.name not in self.order and not p.name.startswith("_")]
        self.repo_url, self.site_url = self._urls()
        self.debris: list[str] = []
        self.taught: dict[str, str] = {}  # symbol -> "page.md#section"
        self.titles: dict[str, str] = {}
        self.nbs: dict[str, list] = {}
        self.fm: dict[str, dict] = {}
        self.by_module = {m.group(1): page_name(n) for n in self.order if n.endswith(".ipynb")
                          if (m := re.search(r"#\|\s*default_exp\s+(\w+)", (NBS / n).read_text()))}

    def _urls(self):
        t = (NBS / "nbdev.yml").read_text()
        get = lambda k: (re.search(rf'{k}:\s*"?([^"\n]+)"?', t) or [None, ""])[1].strip()  # noqa: E731
        return get("repo-url"), get("site-url")

    # -- links ----------------------------------------------------------------------------------------------------
    def _lesson_links(self, md: str, me: str) -> str:
        "Link 'lesson 2', 'lesson 03's', 'the previous lesson', 'the pipeline lesson' to the page they mean."
        nums = {lesson_number(n): page_name(n) for n in self.order if lesson_number(n)}
        i = self.order.index(me) if me in self.order else -1
        prev_ = page_name(self.order[i - 1]) if i > 0 else None
        next_ = page_name(self.order[i + 1]) if 0 <= i < len(self.order) - 1 else None

        def plain(seg: str) -> str:
            def num(m):
                k = f"{int(m.group(2))}{m.group(3) or ''}"
                return f"[{m.group(0)}]({nums[k]}.md)" if k in nums and nums[k] != page_name(me) else m.group(0)
            seg = re.sub(r"\b([Ll]esson) (\d+)([a-z]?)\b", num, seg)
            if prev_:
                seg = re.sub(r"\b(the previous lesson)\b", rf"[\1]({prev_}.md)", seg)
            if next_:
                seg = re.sub(r"\b((?:the )?next lesson)\b", rf"[\1]({next_}.md)", seg)
            # "the pipeline lesson": the lesson whose notebook exports that module
            return re.sub(r"\bthe (\w+) lesson\b", lambda m: f"[{m.group(0)}]({self.by_module[m.group(1)]}.md)"
                          if self.by_module.get(m.group(1), page_name(me)) != page_name(me) else m.group(0), seg)

        parts = _LINK.split(md)
        return "".join(p if k % 2 else plain(p) for k, p in enumerate(parts))

    def _fix_links(self, md: str, me: str) -> str:
        md = re.sub(r"\]\((?:\./)?(\d*[a-z]?_?[\w-]+)\.ipynb(#[^)]*)?\)",
                    lambda m: f"]({page_name(m.group(1) + '.ipynb')}.md{m.group(2) or ''})", md)
        md = re.sub(r"\]\(\.\./([^)#\s]+)\)", lambda m: f"]({self._outside(m.group(1))})", md)
        site = self.site_url.rstrip("/") + "/"
        if site != "/":
            md = re.sub(re.escape(site) + r"([\w-]+)\.html", r"\1.md", md)  # nbdev's API links, made relative
        # nbdev links private names and methods too, which have no card: methods go to their class, private names unlinked
        md = re.sub(r"\[(`[^`\n]+`)\]\(([\w-]+\.md)#(\w+)\.\w+\)", r"[\1](\2#\3)", md)
        md = re.sub(r"\[(`_[^`\n]+`)\]\([\w-]+\.md#_\w+\)", r"\1", md)
        return self._lesson_links(md, me)

    def _outside(self, rel: str) -> str:
        "A link to a file outside nbs/: images are copied into the site, other files link to the repository."
        src = ROOT / rel
        if src.suffix.lower() in (".png", ".svg", ".jpg", ".gif") and src.exists():
            dest = self.docs / "files" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            return f"files/{rel}"
        return f"{self.repo_url}/blob/main/{rel}"

    # -- cells ----------------------------------------------------------------------------------------------------
    def _outputs(self, cell, page: str, n: int, cap: str | None) -> list[str]:
        parts = []
        for k, o in enumerate(cell.get("outputs", [])):
            data = o.get("data", {})
            if o.get("output_type") == "stream" or (not data and "text" in o):
                txt = _ANSI.sub("", "".join(o.get("text", "")))
                self._check_debris(txt, page)
                if txt.strip():
                    parts.append('<div class="output" markdown>\n\n' + _fence(txt, "text") + "\n\n</div>")
            elif o.get("output_type") == "error":
                parts.append('<div class="output" markdown>\n\n' + _fence(_ANSI.sub("", "\n".join(o.get("traceback", []))), "text") + "\n\n</div>")
            elif "image/png" in data:
                img = f"img/{page}_{n}_{k}.png"
                (self.docs / img).parent.mkdir(parents=True, exist_ok=True)
                (self.docs / img).write_bytes(base64.b64decode(data["image/png"]))
                alt = _plain(cap) if cap else f"figure from {page}"
                fig = f'<figure markdown="span">\n![{alt}]({img})\n'
                if cap:
                    fig += f"<figcaption markdown>{cap}</figcaption>\n"
                parts.append(fig + "</figure>")
            elif "text/markdown" in data:
                md = "".join(data["text/markdown"])
                parts.append(md if md.lstrip().startswith("---") else f'<div class="output" markdown>\n\n{md}\n\n</div>')
            elif "text/html" in data:
                h = "".join(data["text/html"])
                h = re.sub(r"<style[^>]*>.*?</style>", "", h, flags=re.S)
                h = "\n".join(ln for ln in h.splitlines() if ln.strip())  # a blank line would end the HTML block
                parts.append(f'<div class="output html">\n{h}\n</div>')
            elif "text/plain" in data:
                txt = _ANSI.sub("", "".join(data["text/plain"]))
                self._check_debris(txt, page)
                parts.append('<div class="output" markdown>\n\n' + _fence(txt, "text") + "\n\n</div>")
        return parts

    def _check_debris(self, txt: str, page: str):
        for line in txt.splitlines():
            if DEBRIS.search(line):
                self.debris.append(f"{page}: {line.strip()[:140]}")

    def _code(self, cell, page: str, n: int) -> list[str]:
        d = {k: " ".join(v) if isinstance(v, list) else v for k, v in getattr(cell, "directives_", {}).items()}
        lines = cell.source.splitlines()
        for ln in lines:  # Quarto options nbdev left in the source (`#| fig-cap: ...`)
            if m := re.match(r"^#\|\s*([\w-]+):\s*(.*)$", ln):
                d.setdefault(m.group(1), m.group(2))
        src = "\n".join(ln for ln in lines if not ln.startswith("#|")).strip("\n")
        cap = d.get("fig-cap", "").strip().strip('"').strip("'") or None
        if str(d.get("include", "")).lower() == "false":
            return []
        parts = []
        if src and str(d.get("echo", "")).lower() != "false":
            block = _fence(src, "python")
            fold = str(d.get("code-fold", "")).lower()
            if fold in ("true", "show"):
                summary = str(d.get("code-summary", "Code")).strip('"')
                kind = "???+" if fold == "show" else "???"
                block = f'{kind} code "{summary}"\n\n' + "\n".join("    " + ln if ln else "" for ln in block.splitlines())
            parts.append(block)
        if str(d.get("output", "")).lower() != "false":
            parts += self._outputs(cell, page, n, self._fix_links(cap, page) if cap else None)
        return parts

    # -- pages ----------------------------------------------------------------------------------------------------
    def process(self, name: str, procs) -> list:
        from nbdev.process import NBProcessor, read_nb
        nb = read_nb(NBS / name)
        NBProcessor(nb=nb, procs=procs, rm_directives="quarto").process()
        self.fm[name] = getattr(nb, "frontmatter_", {}) or {}  # nbdev moves the '# Title' and '> description' here
        return [c for c in nb.cells if c.cell_type != "raw"]

    def notebook_page(self, name: str, cells) -> str:
        page = page_name(name)
        parts, heading = [], None
        fm, num = self.fm.get(name, {}), lesson_number(name)
        if fm.get("title"):
            parts.append(f"# {num + '. ' if num else ''}{fm['title']}")
            if fm.get("description"):
                parts.append(f'<p class="lead" markdown>{self._fix_links(fm["description"], name)}</p>')
            if num:  # where to run it: the notebook in the repository, and `make lab`
                parts.append(f'<p class="run-it" markdown>This page is a notebook: [nbs/{name}]({self.repo_url}/blob/main/nbs/{name}) '
                             "in the repository; `make lab` opens it in JupyterLab to run cell by cell.</p>")
        for n, c in enumerate(cells):
            if c.cell_type == "markdown":
                src = self._fix_links(c.source, name)
                if m := re.search(r"^#\s+(.+)$", src, re.M):
                    num = lesson_number(name)
                    if num:  # the lesson's number in its title, as in the sidebar
                        src = src.replace(m.group(0), f"# {num}. {m.group(1)}", 1)
                for h in re.findall(r"^#{2,3}\s+(.+)$", src, re.M):
                    heading = h
                parts.append(src)
            elif c.cell_type == "code" and c.get("source"):
                for sym in re.findall(r"^(?:def|class|async def)\s+(\w+)|^show_doc\((\w+)", c.source, re.M):
                    sym = sym[0] or sym[1]
                    if heading and sym not in self.taught:
                        self.taught[sym] = f"{page}.md#{_slug(heading)}"
                parts += self._code(c, page, n)
        return "\n\n".join(p for p in parts if p.strip()) + "\n"

    def api_page(self, card) -> str:
        from ray_vllm_tutorial import _modidx
        mods = sorted(_modidx.d["syms"], key=lambda m: self._module_rank(m))
        out = ["# API reference", "",
               "Everything the package exports, module by module: signature, docstring and parameters, and the lesson "
               "section that builds it. The same cards appear in the lessons, right after the code they document."]
        for m in mods:
            mod = importlib.import_module(m)
            names = [n for n in getattr(mod, "__all__", []) if inspect.isfunction(getattr(mod, n, None))
                     or inspect.isclass(getattr(mod, n, None))]
            if not names:
                continue
            out.append(f"## {m}")
            if mod.__doc__:
                out.append(mod.__doc__.strip().splitlines()[0])
            for n in names:
                md = card(getattr(mod, n))._repr_markdown_()
                if n in self.taught:
                    md += f"\n\nTaught in: [{self._where(self.taught[n])}]({self.taught[n]})"
                out.append(md)
        return "\n\n".join(out) + "\n"

    def _module_rank(self, m: str):
        for i, n in enumerate(self.order):
            if n.endswith(".ipynb") and re.search(rf"#\|\s*default_exp\s+{m.split('.')[-1]}\b", (NBS / n).read_text()):
                return (i, m)
        return (len(self.order), m)

    def _where(self, target: str) -> str:
        page = target.split(".md")[0]
        name = next((n for n in self.order if page_name(n) == page), page)
        num = lesson_number(name)
        return f"lesson {num}, {self.titles.get(name, page)}" if num else self.titles.get(name, page)

    def nav(self) -> list[str]:
        lines = []
        for n in self.order:
            num = lesson_number(n)
            label = "Home" if page_name(n) == "index" else (f"{num}. " if num else "") + self.titles.get(n, n)
            lines.append(f"  - {_yaml(label)}: {page_name(n)}.md")
        lines.append("  - API reference: api.md")
        return lines

    def build(self) -> int:
        from ray_vllm_tutorial import _modidx  # noqa: F401  (installed: the cards need it)
        card = _card_renderer()
        ns = {}
        for m in importlib.import_module(f"{PKG}._modidx").d["syms"]:
            mod = importlib.import_module(m)
            ns.update({k: getattr(mod, k) for k in getattr(mod, "__all__", [])})
        procs = _processors(card, ns)
        self.docs.mkdir(parents=True, exist_ok=True)
        os.environ["IN_TEST"] = "1"
        for n in self.order + self.extra:
            if n.endswith(".ipynb"):
                self.nbs[n] = self.process(n, procs)
                self.titles[n] = self.fm[n].get("title") or title_of(self.nbs[n])
        for n in self.order + self.extra:
            if n.endswith(".ipynb"):
                (self.docs / f"{page_name(n)}.md").write_text(self.notebook_page(n, self.nbs[n]))
            else:
                shutil.copy2(NBS / n, self.docs / f"{page_name(n)}.md")
                self.titles[n] = title_of([type("C", (), {"cell_type": "markdown", "source": (NBS / n).read_text()})()])
        (self.docs / "api.md").write_text(self.api_page(card))
        (self.docs / "site.css").write_text(CSS)
        cfg = self.docs.parent / "mkdocs.yml"
        cfg.write_text(MKDOCS.format(site_url=self.site_url, repo_url=self.repo_url, out=self.out,
                                     docs=self.docs, nav="\n".join(self.nav())))
        r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(cfg)],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"mkdocs build failed:\n{r.stdout}\n{r.stderr}")
        return len(self.order) + len(self.extra) + 1


def _slug(heading: str) -> str:
    "The anchor MkDocs gives a heading (Python-Markdown's toc slugify, applied to the text without Markdown)."
    from markdown.extensions.toc import slugify
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return slugify(re.sub(r"[`*]", "", text), "-")


def _yaml(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


MKDOCS = """\
site_name: ray_vllm_tutorial
site_description: "Teach and run LLM batch inference at scale: Ray, vLLM, tensor and data parallelism"
site_url: {site_url}
repo_url: {repo_url}
repo_name: ray_vllm_tutorial on GitHub
edit_uri: ""
docs_dir: {docs}
site_dir: {out}
use_directory_urls: false
validation:
  links: {{not_found: warn, anchors: warn, absolute_links: info, unrecognized_links: warn}}
theme:
  name: material
  font: false            # system fonts: nothing fetched from outside when the site is read offline
  features: [navigation.footer, navigation.top, toc.follow, search.highlight, content.code.copy]
  palette:
    - scheme: default
      primary: indigo
      toggle: {{icon: material/weather-night, name: Dark theme}}
    - scheme: slate
      primary: indigo
      toggle: {{icon: material/weather-sunny, name: Light theme}}
extra_css: [site.css]
plugins: [search]
markdown_extensions:
  - tables
  - attr_list
  - md_in_html
  - admonition
  - pymdownx.details
  - pymdownx.superfences
  - pymdownx.highlight: {{use_pygments: true}}
  - toc: {{permalink: true, toc_depth: 3}}
nav:
{nav}
"""

CSS = """
/* one figure width for every lesson; never wider than the column (phones included) */
.md-typeset figure { max-width: 100%; margin: 1.2em auto; }
.md-typeset figure img { width: 720px; max-width: 100%; height: auto; }
.md-typeset figcaption { max-width: 720px; font-style: normal; color: var(--md-default-fg-color--light); }
/* saved outputs: marked off from the code above them; wide tables and text scroll inside their box */
.md-typeset .output { border-left: 3px solid #f4a261; padding-left: .6em; margin: -.6em 0 1em; }
.md-typeset .output pre, .md-typeset .output.html { overflow-x: auto; max-width: 100%; }
.md-typeset .output.html { border-left: 3px solid #f4a261; padding-left: .6em; font-size: .75rem; }
.md-typeset .output.html table { display: table; }
.md-typeset pre > code { white-space: pre; }
.md-typeset .params table code { white-space: nowrap; }
.md-typeset .params td:last-child { min-width: 18em; }
@media (max-width: 600px) {  /* phones: each parameter a block, its details under its name, type and default */
  .md-typeset .params table:not([class]) { display: block; border: none; }
  .md-typeset .params thead { display: none; }
  .md-typeset .params tbody, .md-typeset .params tr { display: block; }
  .md-typeset .params tr { border-top: 1px solid var(--md-typeset-table-color); padding: .3em 0; }
  .md-typeset .params table:not([class]) td { display: inline-block; border: none; padding: .1em .4em; }
  .md-typeset .params table:not([class]) td:last-child { display: block; min-width: 0; }
}
.md-typeset p.run-it { font-size: .7rem; color: var(--md-default-fg-color--light); }
.md-typeset p.lead { font-size: .9rem; color: var(--md-default-fg-color--light); }
.md-typeset h3[id] code, .md-typeset h3 { word-break: break-word; }
"""


def fix_readme(readme: Path) -> None:
    "README.md as nbconvert writes it from index.ipynb, made to read well on a code host: lesson links into nbs/,"
    " each figure with its caption as alt text and below it, and a link to the site."
    text = readme.read_text()
    text = re.sub(r"\]\((\d[0-9a-z_]*\.ipynb|glossary\.ipynb)\)", r"](nbs/\1)", text)
    from nbdev.process import read_nb
    caps = []
    for c in read_nb(NBS / "index.ipynb").cells:
        if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
            m = re.search(r'^#\|\s*fig-cap:\s*"?(.*?)"?\s*$', c.source, re.M)
            caps.append(m.group(1) if m else None)
    imgs = iter(caps)

    def figure(m):
        cap = next(imgs, None)
        return f"![{_plain(cap)}]({m.group(1)})\n\n*{cap}*" if cap else m.group(0)
    readme.write_text(re.sub(r"!\[png\]\(([^)]+)\)", figure, text))


def build(out: Path) -> tuple[int, float, list[str]]:
    "Write the site into `out`; return (pages, seconds, output debris found in the saved outputs)."
    t0 = time.perf_counter()
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as work:
        cwd = os.getcwd()
        os.chdir(ROOT)  # nbdev reads its settings from pyproject.toml here
        try:
            site = Site(out, Path(work))
            pages = site.build()
        finally:
            os.chdir(cwd)
    return pages, time.perf_counter() - t0, site.debris


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "_site"))
    p.add_argument("--readme", help="only fix up this README.md (written by nbconvert from index.ipynb) and stop")
    a = p.parse_args()
    if a.readme:
        sys.exit(fix_readme(Path(a.readme)))
    pages, secs, debris = build(Path(a.out))
    print(f"wrote {pages} pages to {a.out} in {secs:.0f} s (MkDocs Material); read it with search at "
          f"http://localhost:8000 after: python -m http.server -d {a.out} 8000")
    if debris:
        print(f"output debris left in saved outputs ({len(debris)} lines; the lessons' owners should clean them):")
        print("\n".join("  " + d for d in debris))
