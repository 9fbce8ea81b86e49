"""The course without a kernel: ``./course html [--out site]`` writes a static site of the notebooks.

``site/index.html`` lists the notebooks; ``site/NN_name.html`` is each notebook with its stored outputs (figures,
tables, the static strips beside the slider demos), converted by nbconvert's ``lab`` template; equations are
typeset in the browser by MathJax 2.7, served from ``site/mathjax/`` (copied from the ``jupyter-server-mathjax``
package, so that the pages need no network). Links between notebooks (``01_ddim.ipynb#Glossary``) become links
between pages. Publish the folder on any static host (for example GitHub Pages: push ``site/`` to a ``gh-pages``
branch), or read it locally with ``python -m http.server -d site``.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
# the combined TeX + HTML-CSS configuration and Safe, both shipped by jupyter-server-mathjax's MathJax 2.7, then ours:
# that package ships only the STIX-Web fonts, so HTML-CSS must be told not to look for the TeX fonts it lacks
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/course"
_LOCAL_CONFIG = """MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/local/course.js");
"""
# MathJax also writes each equation as hidden MathML for screen readers (AssistiveMML); its NativeMML styles give
# \mathbb, \mathcal & co. the TeX web fonts, which the package does not ship, so Chromium asked for four missing .otf
# files. The MathML is clipped out of sight and read aloud, never drawn: it may keep the page's font.
_ASSISTIVE_FONTS = """<style>
.MJX_Assistive_MathML [mathvariant], .MJX_Assistive_MathML [class^="MJX-tex-"] { font-family: inherit !important; }
</style>
<link rel="icon" href="data:,">
</head>"""
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_NOTE = ('<p style="border-left: 3px solid #1e88e5; padding: 0.3em 0.8em; color: #37474f"><em>A slider demo '
                'stands here: it answers in JupyterLab (<code>./course lab</code>). The figures beside it show a few of '
                'its settings.</em></p>')
_NOTEBOOK_LINK = re.compile(r'href="(\d\d_\w+)\.ipynb(#[^"]*)?"')


def mathjax_folder() -> Path:
    """The MathJax 2.7 tree that jupyter-server-mathjax ships (``MathJax.js`` and its ``config/``)."""
    try:
        import jupyter_server_mathjax
    except ImportError as exc:  # a venv older than requirements.txt
        raise RuntimeError("mathjax: the jupyter-server-mathjax package is missing; ./course setup installs it") from exc
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise RuntimeError(f"mathjax: expected MathJax.js in {folder}, found none")
    return folder


def notebook_title(path: Path) -> str:
    """The first heading of the notebook's first markdown cell, without the '#' marks."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def build_site(out: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write ``out/index.html``, one page per notebook (stored outputs, never re-executed) and ``out/mathjax/``;
    returns the pages written, index first."""
    import nbformat
    from nbconvert import HTMLExporter

    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) if notebooks is None else [Path(p) for p in notebooks]
    missing = [str(p) for p in notebooks if not p.is_file() or p.suffix != ".ipynb"]
    if missing or not notebooks:
        raise ValueError(f"notebooks: expected existing .ipynb files, got {missing or 'none'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mathjax_folder(), out / "mathjax", dirs_exist_ok=True)
    (out / "mathjax" / "config" / "local").mkdir(parents=True, exist_ok=True)
    (out / "mathjax" / "config" / "local" / "course.js").write_text(_LOCAL_CONFIG)
    exporter = HTMLExporter(template_name="lab", mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}")
    pages, rows = [], []
    for nb in notebooks:
        node = nbformat.read(nb, as_version=4)
        node.metadata.pop("widgets", None)  # no live widgets without a kernel: no widget manager to fetch either
        for cell in node.cells:
            for output in cell.get("outputs", []):
                if _WIDGET_VIEW in output.get("data", {}):  # else the page shows the widget's repr, "VBox(children=..."
                    output["data"] = {"text/html": _WIDGET_NOTE}
        body, _ = exporter.from_notebook_node(node)
        body = body.replace("</head>", _ASSISTIVE_FONTS, 1)
        # the lab template always loads require.js from a CDN for JavaScript outputs (live widgets); stored pages
        # have none, and a page that reaches the network is not one that reads offline
        body = body.replace(f'<script src="{exporter.require_js_url}"></script>', "", 1)
        body = _NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
        page = out / f"{nb.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
        rows.append(f'<li><a href="{page.name}">{html.escape(notebook_title(nb))}</a></li>')
    index = out / "index.html"
    index.write_text(_INDEX.format(items="\n".join(rows)), encoding="utf-8")
    return [index] + pages


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Diffusion models and visual tokenizers: the course</title>
<style>body {{ font-family: sans-serif; max-width: 46em; margin: 3em auto; line-height: 1.5; }}</style></head>
<body>
<h1>Diffusion models and visual tokenizers</h1>
<p>The course's notebooks with their stored outputs, readable without a kernel. The slider demos need JupyterLab
(<code>./course lab</code>); beside each one, a strip of two or three settings carries its lesson here.</p>
<ol start="0">
{items}
</ol>
</body></html>
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="./course html", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "site", help="the folder to write (default: site/)")
    p.add_argument("notebooks", nargs="*", type=Path, help="notebooks to include (default: all of notebooks/)")
    a = p.parse_args(argv)
    pages = build_site(a.out, a.notebooks or None)
    print(f"wrote {len(pages) - 1} notebook pages and {pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
