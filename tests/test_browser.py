"""The sliders in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

For every notebook with slider demos: open it, run all cells, wait for the widgets, move each demo's first slider
with the keyboard and check that its picture changed, and that no cell shows an error. Screenshots go to
``runs/browser/``. Skipped where /usr/bin/chromium or the playwright package is missing (``.ci/run`` installs
Chromium; the browser is never downloaded by Playwright).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "runs" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                                              "(apt-get install chromium; .ci/run does it)")
sync_api = pytest.importorskip("playwright.sync_api")


def slider_notebooks(folder: Path = NOTEBOOKS) -> list[str]:
    """Notebooks with at least one slider demo shown (a cell calling ``.show()`` on a demo)."""
    out = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if any(c["cell_type"] == "code" and re.search(r"^\w+\.show\(\)\s*$", "".join(c["source"]), re.M)
               for c in cells):
            out.append(path.name)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of the notebooks (running them must not touch the committed files)."""
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS, tmp / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "settings"
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},  # every cell in the DOM
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    token, port = "course-browser-test", _free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    env.pop("MPLBACKEND", None)
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", "--allow-root", "--ServerApp.open_browser=False",
                             f"--ServerApp.root_dir={tmp / 'notebooks'}"], env=env,
                            stdout=open(tmp / "lab.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {"base": base, "token": token, "dir": tmp}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(lab):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(lab["dir"] / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


_ALL_DONE = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent.trim());
  return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t));
}"""


def run_notebook(page, lab, name: str, timeout_s: float = 240):
    # a fresh workspace for each notebook: JupyterLab would otherwise reopen the previous tabs beside it
    workspace = re.sub(r"\W", "", Path(name).stem)
    page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{name}?token={lab['token']}&reset")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    # the toolbar says "idle" before the kernel is connected: wait for the kernel's connection instead
    page.wait_for_function("""() => {
      const el = document.querySelector('.jp-Notebook-ExecutionIndicator');
      return el && el.getAttribute('data-status') === 'idle'; }""", timeout=60_000)
    page.wait_for_selector(".jp-KernelStatus, .jp-StatusBar-Item", timeout=30_000)
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
        .some(e => /Idle/.test(e.textContent))""", timeout=60_000)
    # clear the stored outputs first, so that numbered prompts can only come from this run
    page.click(".lm-MenuBar-itemLabel >> text=Edit", timeout=10_000)
    page.click("li >> text=Clear Outputs of All Cells", timeout=10_000)
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
        .every(p => !/\\d/.test(p.textContent))""", timeout=30_000)
    # trigger "Run All Cells" from the menu and wait on the DOM (never await the command itself)
    page.click(".lm-MenuBar-itemLabel >> text=Run", timeout=10_000)
    page.click("li >> text=Run All Cells", timeout=10_000)
    page.wait_for_function(_ALL_DONE, timeout=timeout_s * 1000, polling=1000)


def _picture(demo) -> str:
    img = demo.locator(".widget-output img, .jp-OutputArea-output img").first
    return img.get_attribute("src") or ""


@pytest.mark.parametrize("name", slider_notebooks())
def test_sliders_move_and_redraw_in_jupyterlab(lab, browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        run_notebook(page, lab, name)
        page.wait_for_function("""() => [...document.querySelectorAll('.jp-OutputArea-output .widget-hslider')]
            .some(e => e.offsetParent !== null)""", timeout=60_000)
        page.wait_for_timeout(500)
        boxes = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-hslider"))
        shown = [boxes.nth(i) for i in range(boxes.count()) if boxes.nth(i).is_visible()]
        count = len(shown)
        assert count >= 1, f"{name}: no slider demo rendered"
        cell_errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]')
        assert cell_errors.count() == 0, f"{name}: a cell shows an error: {cell_errors.first.inner_text()[:500]}"
        for i, demo in enumerate(shown):
            demo.scroll_into_view_if_needed()
            before = _picture(demo)
            assert before, f"{name}: demo {i} shows no picture"
            handle = demo.locator(".widget-hslider .noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowLeft")  # every demo starts at a value it can move away from in one direction
            page.keyboard.press("ArrowLeft")
            try:
                page.wait_for_function("([el, old]) => { const i = el.querySelector('.widget-output img, "
                                       ".jp-OutputArea-output img'); return i && i.getAttribute('src') !== old; }",
                                       arg=[demo.element_handle(), before], timeout=15_000)
            except sync_api.TimeoutError:  # at the low end of its range already: move the other way
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                try:
                    page.wait_for_function("([el, old]) => { const i = el.querySelector('.widget-output img, "
                                           ".jp-OutputArea-output img'); return i && i.getAttribute('src') !== old; }",
                                           arg=[demo.element_handle(), before], timeout=15_000)
                except sync_api.TimeoutError:
                    pass  # reported by the assertion below
            assert _picture(demo) != before, f"{name}: demo {i}'s picture did not change after a key press"
        assert cell_errors.count() == 0, f"{name}: a callback raised: {cell_errors.first.inner_text()[:500]}"
        assert not errors, f"{name}: page errors {errors[:3]}"
    finally:
        page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"), full_page=False)
        page.close()


def test_slider_notebooks_are_found():
    names = slider_notebooks()
    assert "01_ddim.ipynb" in names and len(names) >= 5


_PREVIEW_DEMO = '''import time
import torch
from course_lib.widgets import fewer_steps, image_strip_demo


def compute(level, steps):
    if steps > 2:
        time.sleep(2.0)  # a slow sampler: the asked picture comes from the background thread
    return {"images": torch.full((2, 3, 4, 4), level / 10 - steps / 100)}


demo = image_strip_demo(compute, lambda r, v: f"level {v['level']}, {v['steps']} steps", nrow=2,
                        preview=fewer_steps(compute, 2), level=(0, 9, 1, 5), steps=(1, 50, 1, 20))'''


def test_a_preview_is_replaced_by_the_asked_picture_from_the_background_in_jupyterlab(lab, browser):
    """The asked picture is sent from the refining thread (the Output widget's outputs set there): the browser must
    show the preview first, then the asked picture, with no error and no further key press."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_PREVIEW_DEMO), nbformat.v4.new_code_cell("demo.show()")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab["dir"] / "notebooks" / "preview_check.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        run_notebook(page, lab, "preview_check.ipynb", timeout_s=120)
        page.wait_for_function("""() => [...document.querySelectorAll('.jp-OutputArea-output .widget-hslider')]
            .some(e => e.offsetParent !== null)""", timeout=60_000)
        demo = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-hslider")).first
        first = _picture(demo)
        assert first, "the demo shows no picture"
        handle = demo.locator(".widget-hslider .noUi-handle").first  # the level slider: a setting never computed
        handle.focus()
        page.keyboard.press("ArrowLeft")
        changed = "([el, old]) => { const i = el.querySelector('.widget-output img'); " \
                  "return i && i.getAttribute('src') !== old; }"
        page.wait_for_function(changed, arg=[demo.element_handle(), first], timeout=15_000)
        preview = _picture(demo)
        page.wait_for_function(changed, arg=[demo.element_handle(), preview], timeout=30_000)
        asked = _picture(demo)
        assert asked not in (first, preview), "the asked picture replaced the preview"
        cell_errors = page.locator('[data-mime-type="application/vnd.jupyter.error"], '
                                   '[data-mime-type="application/vnd.jupyter.stderr"]')
        assert cell_errors.count() == 0, cell_errors.first.inner_text()[:500]
        assert not errors, errors[:3]
    finally:
        page.screenshot(path=str(SHOTS / "preview_check.png"), full_page=False)
        page.close()
