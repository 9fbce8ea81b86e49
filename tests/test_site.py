"""./course html: the static site, opened in the real browser (Debian's Chromium driven by Playwright, the folder served
on 127.0.0.1, no network): the index lists every notebook, and on two pages the equations are typeset by the bundled MathJax and
every stored figure decodes; screenshots go to ``runs/site/``. Skipped where /usr/bin/chromium or playwright is missing (.ci/run installs Chromium)."""
from __future__ import annotations

import functools
import html
import http.server
import re
import threading
from pathlib import Path

import pytest

from course_lib.tools.site import NOTEBOOKS, ROOT, build_site, notebook_title

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "runs" / "site"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return out, build_site(out)


def test_site_has_an_index_and_one_page_per_notebook_with_links_rewritten(site):
    out, pages = site
    names = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert [p.name for p in pages] == ["index.html"] + [n.replace(".ipynb", ".html") for n in names]
    index = pages[0].read_text()
    for n in names:  # every notebook listed under its own title
        assert f'href="{n.replace(".ipynb", ".html")}"' in index and html.escape(notebook_title(NOTEBOOKS / n)) in index
    page = (out / "01_ddim.html").read_text()
    assert 'href="00_welcome.html#Glossary"' in page and ".ipynb#" not in page
    assert "mathjax/MathJax.js?config=" in page and "libs/mathjax" not in page  # the bundled copy, not a CDN
    assert "require.min.js" not in page
    assert "jupyter-widgets" not in page  # stored widget state dropped: no widget manager to download
    assert "VBox(children" not in page and "A slider demo stands here" in page  # a note, not the widget's repr
    assert (out / "mathjax" / "MathJax.js").is_file()


def test_bad_notebook_list_is_refused(tmp_path):
    with pytest.raises(ValueError, match="notebooks"):
        build_site(tmp_path, [tmp_path / "missing.ipynb"])
    (tmp_path / "notes.md").write_text("# not a notebook")
    with pytest.raises(ValueError, match=r"notebooks: expected existing \.ipynb files, got \['.*notes\.md'\]"):
        build_site(tmp_path, [tmp_path / "notes.md"])
    with pytest.raises(ValueError, match="got none"):
        build_site(tmp_path, [])


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_pages_render_equations_and_images_in_the_browser(site):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _ = site
    # served over 127.0.0.1 as a static host would serve it: over file:// Chromium refuses MathJax's web fonts
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        missing = []  # a MathJax file or font the page asked for and the site lacks
        page.on("requestfailed", lambda r: missing.append(r.url) if r.url.startswith(base) else None)
        # MathJax's own font probe asks for about:blank; anything else off the site is the network
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "about:", "data:")) else None)
        page.goto(f"{base}/index.html")
        assert page.locator("li a").count() == len(list(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
        for name in ("00_welcome.html", "01_ddim.html"):
            page.goto(f"{base}/{name}")
            # MathJax 2 (HTML-CSS output) replaces each $...$ by a span.MathJax; errors show as .MathJax_Error / merror
            page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && "
                                   "document.querySelectorAll('span.MathJax').length > 20", timeout=120_000)
            assert page.locator(".MathJax_Error, merror").count() == 0
            raw_dollars = page.evaluate("() => [...document.querySelectorAll('.jp-MarkdownOutput')]"
                                        ".map(e => e.innerText).join(' ')")
            assert not re.search(r"\$\\\w+", raw_dollars), "an equation left untypeset"
            sizes = page.evaluate("() => [...document.images].map(i => [i.complete, i.naturalWidth])")
            assert len(sizes) > 5 and all(done and width > 0 for done, width in sizes), name
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
        browser.close()
    server.shutdown()
    assert not missing, f"files the pages asked for and the site lacks: {missing[:5]}"
    assert not outside, f"the pages reached outside the site: {outside[:5]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
