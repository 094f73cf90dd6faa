"""The attention explorer in a real browser: JupyterLab driven by headless Chromium through Playwright.

For each notebook (the fixture in tests/browser/, and solutions/07_*.ipynb)
the test starts JupyterLab on 127.0.0.1, opens a copy of the notebook in a
1400 x 900 window, runs all cells, waits for the last explorer in it to
render, then:
- changes head, layer and view, and checks that the picture changed each time
  and that the query slider shows only in the query view;
- checks that the whole explorer fits the window and its picture is not shrunk;
- types a prompt and clicks Run at once, 12 times: the explorer must show what
  was typed, and the box keep it (a click can overtake the typed text);
- types a prompt and presses Enter (with a newline typed as \\n), then an
  unknown character: the message must not move the picture;
- saves, shuts the kernel down and opens the notebook again: the picture of
  the last view and how to bring the explorer back, no widget error;
and no "Error displaying widget" or page error may appear. A second test opens
solutions/07 as stored, not run (an untrusted notebook), and checks the same
picture.

Needs the Python package playwright (its driver only: never run
`playwright install`, which downloads a browser) and a system Chromium
(Debian: apt-get install chromium fonts-dejavu-core; elsewhere set
GPTLIB_CHROMIUM=/path/to/chrome). Without them the test skips, unless
GPTLIB_REQUIRE_BROWSER=1 (CI), which turns the skip into a failure.

Other variables: GPTLIB_BROWSER_ARTIFACTS, a folder for screenshots (of the
explorer in the window, the reopened notebook, the stored solution) and, on a
failure, the server log (default: a new temp dir, printed in the failure message);
GPTLIB_BROWSER_TIMEOUT, seconds to wait for the notebook to run (default 300);
GPTLIB_EXPLORER_SCREENSHOT, a path to save a screenshot of the explorer to
(how docs/explorer.png is made).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.notebooks  # runs solutions/07 in JupyterLab

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "browser" / "explorer_fixture.ipynb"
NOTEBOOKS = [FIXTURE, *sorted((ROOT / "solutions").glob("07_*.ipynb"))]
CHROMIUM_ARGS = [
    # --headless comes from headless=True; Playwright refuses --user-data-dir here (the profile is its argument)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_ENABLE = (
    "To run it: pip install playwright (the driver only; never `playwright install`), and install Chromium "
    "(Debian/Ubuntu: apt-get install chromium fonts-dejavu-core), or point GPTLIB_CHROMIUM at a Chrome/Chromium "
    "binary. GPTLIB_REQUIRE_BROWSER=1 turns this skip into a failure (CI sets it)."
)
STEP_TIMEOUT_MS = 60_000  # one redraw; generous for a loaded CI machine
VIEWPORT = {"width": 1400, "height": 900}


def _chromium() -> str | None:
    given = os.environ.get("GPTLIB_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_browser() -> str:
    """The Chromium path, or skip (fail under GPTLIB_REQUIRE_BROWSER=1) saying what is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright is not installed")
    chromium = _chromium()
    if chromium is None:
        given = os.environ.get("GPTLIB_CHROMIUM")
        missing.append(f"GPTLIB_CHROMIUM={given} is not a file" if given else "no chromium on PATH")
    if missing:
        message = f"browser test not run: {'; '.join(missing)}. {HOW_TO_ENABLE}"
        if os.environ.get("GPTLIB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium


# --- JupyterLab -------------------------------------------------------------------------------------


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings: Path) -> None:
    # No news toast over the screenshots, no update check, no autosave into the temp copy.
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for rel, value in files.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 with throwaway settings, workspaces and root; killed afterwards."""
    _require_browser()
    base = tmp_path_factory.mktemp("lab")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    _write_settings(settings)
    token = secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),  # the user's own Jupyter config stays out of it
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    log = base / "jupyterlab.log"
    proc = None
    url = ""
    for _ in range(3):  # the free port can be taken between choosing and binding it
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={base / 'workspaces'}",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # JupyterLab exits at once as root without it
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        if _wait_ready(proc, f"{url}/api/status?token={token}", timeout=90):
            break
        _stop(proc)
        proc = None
    if proc is None:
        pytest.fail(f"JupyterLab did not start; its log:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        yield Lab(url=url, token=token, root=root, log=log)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, status_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(status_url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _place(notebook: Path, lab_root: Path) -> str:
    """Copy the notebook into the lab root at its path in the repo; link the repo's other top-level entries.

    The kernel then runs in a copy (the repo's notebook is never saved over) yet
    finds what the notebook reads by relative path (e.g. ../data). Returns the
    notebook's path relative to the lab root.
    """
    rel = notebook.relative_to(ROOT)
    target = lab_root / rel
    top = lab_root / rel.parts[0]
    if top.is_symlink():  # linked in for an earlier notebook: a real folder keeps the copy out of the repo
        top.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(notebook, target)
    for entry in ROOT.iterdir():
        link = lab_root / entry.name
        if entry.name.startswith(".") or entry.name == rel.parts[0] or link.exists():
            continue
        try:
            link.symlink_to(entry, target_is_directory=entry.is_dir())
        except OSError:  # e.g. Windows without the symlink privilege: relative reads may then fail
            pass
    return rel.as_posix()


# --- the browser --------------------------------------------------------------------------------------


KERNEL_IDLE = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!(w && w.content && w.content.widgets && k && k.connectionStatus === 'connected' && k.status === 'idle');
}"""


# "done" once every non-empty code cell has run and the kernel is idle; "error" if a cell raised.
RUN_FINISHED = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    const k = nb.sessionContext.session && nb.sessionContext.session.kernel;
    if (!k || k.status !== 'idle') return false;
    const cells = nb.content.widgets.filter(
        c => c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== '');
    const outputs = c => Array.from({length: c.model.outputs.length}, (_, i) => c.model.outputs.get(i));
    if (cells.some(c => outputs(c).some(o => o.type === 'error'))) return 'error';
    return cells.every(c => c.model.executionCount !== null) ? 'done' : false;
}"""


# The stored outputs of every widget output have settled: rendered, or given up ("Error displaying
# widget"), or shown as their plain-text fallback (an untrusted notebook). Not "Loading widget...".
WIDGETS_SETTLED = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .every(o => !o.textContent.startsWith('Loading widget'))"""

# The picture of the explorer's last view, loaded and on screen.
PICTURE_SHOWN = """() => {
    const img = Array.from(document.querySelectorAll('.gptlib-attn-static img')).pop();
    return !!(img && img.complete && img.naturalWidth > 0 && img.getClientRects().length > 0);
}"""

# The last explorer's status element says it shows `want` as its prompt, without an error.
SHOWS_PROMPT = """(want) => {
    const ex = Array.from(document.querySelectorAll('.gptlib-attn-explorer')).pop();
    const s = ex && ex.querySelector('.gptlib-attn-state');
    return !!s && s.getAttribute('data-prompt') === want && s.getAttribute('data-error') === '0';
}"""

# Scroll the notebook to the cell whose outputs hold the picture of the explorer's last view.
SCROLL_TO_PICTURE = """async () => {
    const nb = window.jupyterapp.shell.currentWidget.content;
    const outputs = c => Array.from({length: c.model.outputs.length}, (_, i) => c.model.outputs.get(i));
    const i = nb.widgets.findIndex(c => c.model.type === 'code' &&
        outputs(c).some(o => JSON.stringify(o.data || {}).includes('gptlib-attn-static')));
    if (i < 0) return false;
    nb.activeCellIndex = i;
    await nb.scrollToItem(i, 'start');
    return true;
}"""

VISIBLE_TEXT = """(text) => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .filter(o => o.getClientRects().length > 0 && o.innerText.includes(text)).length"""
HIDDEN_TEXT = """(text) => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .filter(o => o.getClientRects().length === 0 && o.textContent.includes(text)).length"""


def _artifacts() -> Path:
    given = os.environ.get("GPTLIB_BROWSER_ARTIFACTS")
    return Path(given) if given else Path(tempfile.mkdtemp(prefix="gptlib-browser-"))


def _screenshot(page_or_locator, name: str) -> None:
    """Keep a screenshot for a person to look at, when GPTLIB_BROWSER_ARTIFACTS names a folder."""
    folder = os.environ.get("GPTLIB_BROWSER_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page_or_locator.screenshot(path=str(Path(folder) / f"{name}.png"))


def _open(context, lab: Lab, rel: str, page_errors: list[str]):
    page = context.pages[0] if context.pages else context.new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{lab.url}/lab/tree/{rel}?reset&token={lab.token}")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    return page


def _browser(p, chromium: str, profile: Path):
    # 1400 x 900: the window a learner's laptop gives JupyterLab; the whole explorer must fit in it.
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT
    )


@contextmanager
def _notebook_page(lab: Lab, notebook: Path, name: str) -> Iterator[tuple[Any, str]]:
    """A copy of the notebook open in Chromium: (page, its path in the lab). Failures keep a screenshot."""
    chromium = _require_browser()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    rel = _place(notebook, lab.root)
    page_errors: list[str] = []
    profile = Path(tempfile.mkdtemp(prefix="gptlib-chromium-"))
    with sync_playwright() as p:
        context = _browser(p, chromium, profile)
        page = None
        try:
            page = _open(context, lab, rel, page_errors)
            yield page, rel
            assert not page_errors, f"JavaScript errors in the page: {page_errors}"
        except (AssertionError, PlaywrightError) as e:
            raise _failure(page, lab, name, rel, page_errors, e) from e
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_explorer_in_jupyterlab(lab: Lab, notebook: Path) -> None:
    timeout_ms = int(float(os.environ.get("GPTLIB_BROWSER_TIMEOUT", "300")) * 1000)
    with _notebook_page(lab, notebook, notebook.stem) as (page, rel):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            result = page.wait_for_function(RUN_FINISHED, timeout=timeout_ms).json_value()
        except Exception as e:
            raise AssertionError(
                f"the notebook did not finish running within {timeout_ms / 1000:.0f} s"
            ) from e
        assert result == "done", "a cell raised an error"
        _drive_explorer(page)
        _check_fits_the_window(page, notebook.stem)
        _type_and_click_run(page, rounds=12)
        _press_enter(page)
        assert page.get_by_text("Error displaying widget").count() == 0, "a widget failed to display"
        _reopen_without_kernel(page, lab, rel, notebook.stem)


def test_a_stored_solution_shows_the_explorers_picture_without_a_kernel(lab: Lab) -> None:
    """solutions/07 as shipped, opened and not run (untrusted): the picture and what brings it back."""
    notebook = NOTEBOOKS[-1]
    with _notebook_page(lab, notebook, f"{notebook.stem}-stored") as (page, _):
        _check_picture_instead_of_explorer(page, f"{notebook.stem}-stored")


def _failure(page, lab: Lab, name: str, rel: str, page_errors: list[str], e: Exception) -> AssertionError:
    from playwright.sync_api import Error as PlaywrightError

    artifacts = _artifacts()
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / f"{name}-failure.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
    except (PlaywrightError, AttributeError):
        shot = None
    shutil.copy2(lab.log, artifacts / f"{name}-jupyterlab.log")
    stderr = _notebook_errors(page) if page is not None else "(no page)"
    return AssertionError(
        f"{rel}: {e}\nscreenshot: {shot}\nserver log: {artifacts / f'{name}-jupyterlab.log'}\n"
        f"page errors: {page_errors}\nnotebook stderr/errors:\n{stderr}"
    )


def _notebook_errors(page) -> str:
    try:
        texts = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        ).all_inner_texts()
    except Exception:  # the page may be gone; this is only extra detail for the failure message
        return "(page not readable)"
    return "\n".join(texts)[-3000:] or "(none)"


def _drive_explorer(page) -> None:
    """Wait for the notebook's last explorer to show, then change head, layer, view and prompt."""
    explorer = page.locator(".gptlib-attn-explorer").last
    state = explorer.locator(".gptlib-attn-state")
    image = explorer.locator("img.gptlib-attn-image")
    try:
        state.wait_for(timeout=STEP_TIMEOUT_MS)
    except Exception as e:
        raise AssertionError("the notebook ran, but no attention explorer appeared") from e
    _wait_image(page, image, previous_src=None)
    shot = image.screenshot()
    shot_path = os.environ.get("GPTLIB_EXPLORER_SCREENSHOT")
    if shot_path:
        Path(shot_path).parent.mkdir(parents=True, exist_ok=True)
        explorer.screenshot(path=shot_path)

    def attr(name: str) -> str:
        return state.get_attribute(f"data-{name}") or ""

    def changed(action, name: str, expected: str, what: str) -> None:
        nonlocal shot
        src = image.get_attribute("src")
        action()
        explorer.locator(f".gptlib-attn-state[data-{name}='{expected}']").wait_for(timeout=STEP_TIMEOUT_MS)
        _wait_image(page, image, previous_src=src)
        new = image.screenshot()
        assert new != shot, f"the picture did not change after {what}"
        assert attr("error") == "0", f"the explorer reported an error after {what}: {_message(explorer)}"
        shot = new

    def step(slider: str, key: str = "ArrowRight") -> None:
        explorer.locator(f".gptlib-attn-{slider} .noUi-handle").focus()
        page.keyboard.press(key)

    def slider_max(slider: str) -> int:
        return int(
            float(explorer.locator(f".gptlib-attn-{slider} .noUi-handle").get_attribute("aria-valuemax"))
        )

    for slider in ("head", "layer"):
        n = slider_max(slider) + 1
        assert n >= 2, f"the explorer has {n} {slider}(s); the browser test needs at least 2"
        current = int(attr(slider))
        key, expected = ("ArrowRight", current + 1) if current + 1 < n else ("ArrowLeft", current - 1)
        changed(lambda s=slider, k=key: step(s, k), slider, str(expected), f"changing the {slider}")

    query = explorer.locator(".gptlib-attn-query")
    for label, value in (("all heads", "grid"), ("query", "query"), ("single head", "head")):
        if attr("view") == value:
            continue
        button = explorer.locator(".gptlib-attn-view button", has_text=label)
        changed(button.click, "view", value, f"choosing the view '{label}'")
        # The query slider does something only in the query view; elsewhere it is hidden.
        assert query.is_visible() == (value == "query"), f"the query slider's visibility in view {value}"


def _check_fits_the_window(page, name: str) -> None:
    """The whole explorer (prompt, controls, picture) fits the notebook's part of the window, unshrunk."""
    explorer = page.locator(".gptlib-attn-explorer").last
    explorer.scroll_into_view_if_needed()
    box = explorer.bounding_box()
    area = page.evaluate(
        "() => { const n = document.querySelector('.jp-NotebookPanel-notebook');"
        " return {width: n.clientWidth, height: n.clientHeight}; }"
    )
    assert box["height"] <= area["height"], f"the explorer is {box['height']:.0f} px tall; {area} is shown"
    assert explorer.evaluate("e => e.scrollWidth - e.clientWidth") <= 1, "the explorer is wider than its cell"
    shrunk = explorer.locator("img.gptlib-attn-image").evaluate(
        "img => img.naturalWidth > img.getBoundingClientRect().width + 1"
    )
    assert not shrunk, "the explorer's picture is wider than the notebook, so it is shown shrunk"
    explorer.evaluate("e => e.scrollIntoView({block: 'start'})")
    _screenshot(page, f"{name}-explorer-in-window")


def _type_and_click_run(page, rounds: int) -> None:
    """Type a prompt and click Run at once, many times: Run always shows what was typed, and the box keeps it."""
    explorer = page.locator(".gptlib-attn-explorer").last
    box = explorer.locator(".gptlib-attn-prompt input")
    run = explorer.locator(".gptlib-attn-run")
    original = box.input_value()
    if run.is_disabled():
        return  # an explorer of fixed maps has no prompt to run
    shown = original
    for i in range(rounds):
        text = original[: 2 + (5 * i) % (len(original) - 1)]
        if text == shown:
            text = text[:-1]
        box.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(text)
        run.click()  # no pause: the click races the box's text to the kernel
        want = text.replace("⏎", "\n")
        try:
            page.wait_for_function(SHOWS_PROMPT, arg=want, timeout=STEP_TIMEOUT_MS)
        except Exception as e:
            raise AssertionError(
                f"round {i + 1}: typed {text!r} and clicked Run, but the explorer shows "
                f"{explorer.locator('.gptlib-attn-state').get_attribute('data-prompt')!r}: "
                f"{_message(explorer)}"
            ) from e
        assert box.input_value() == text, (
            f"round {i + 1}: the box went from {text!r} to {box.input_value()!r}"
        )
        shown = text


def _press_enter(page) -> None:
    """Enter runs the prompt; \\n typed in the box is a newline; an error keeps the picture where it is."""
    explorer = page.locator(".gptlib-attn-explorer").last
    box = explorer.locator(".gptlib-attn-prompt input")
    if box.is_disabled():
        return
    original = box.input_value()
    help_line = explorer.locator(".gptlib-attn-help").inner_text()
    assert "Enter" in help_line and "⏎" in help_line, f"the keys are not explained on screen: {help_line!r}"
    typed = original.replace("⏎", "\\n") if "⏎" in original else original[:-1]
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(typed)
    page.keyboard.press("Enter")
    want = typed.replace("\\n", "\n")
    try:
        page.wait_for_function(SHOWS_PROMPT, arg=want, timeout=STEP_TIMEOUT_MS)
    except Exception as e:
        raise AssertionError(f"typed {typed!r} and pressed Enter, but the prompt did not run") from e
    image = explorer.locator("img.gptlib-attn-image")
    top = image.bounding_box()["y"]
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("\u00a7\u00a7")  # a character no tokenizer here knows
    page.keyboard.press("Enter")
    explorer.locator(".gptlib-attn-state[data-error='1']").wait_for(timeout=STEP_TIMEOUT_MS)
    assert _message(explorer).strip(), "an error was reported, but no message shown"
    assert image.bounding_box()["y"] == top, "the message pushed the picture down"


def _reopen_without_kernel(page, lab: Lab, rel: str, name: str) -> None:
    """Save, shut the kernel down, open the notebook again: the last view's picture, not a widget error."""
    page.evaluate(
        "async () => { const nb = window.jupyterapp.shell.currentWidget;"
        " await nb.context.save(); await nb.sessionContext.shutdown(); }"
    )
    page.goto(f"{lab.url}/lab/tree/{rel}?reset&token={lab.token}")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    _check_picture_instead_of_explorer(page, f"{name}-reopened")
    # Trusted (this server saved it): JupyterLab tried the widget, and the picture's style hides the error.
    errors = page.evaluate(HIDDEN_TEXT, "Error displaying widget")
    assert errors == 1, f"expected the old explorer's widget error, hidden; found {errors}"


def _check_picture_instead_of_explorer(page, name: str) -> None:
    page.wait_for_function(WIDGETS_SETTLED, timeout=STEP_TIMEOUT_MS)
    # JupyterLab renders only the cells near the screen: bring the explorer's cell to it.
    assert page.evaluate(SCROLL_TO_PICTURE), "no cell holds a picture of the explorer's last view"
    try:
        page.wait_for_function(PICTURE_SHOWN, timeout=STEP_TIMEOUT_MS)
    except Exception as e:
        raise AssertionError("the picture of the explorer's last view is not shown") from e
    note = page.locator(".gptlib-attn-static").last.text_content() or ""
    assert "run the cells above and this one again" in note and " s" in note, f"no way back is said: {note!r}"
    assert page.evaluate(VISIBLE_TEXT, "Error displaying widget") == 0, "a widget error is on screen"
    assert page.evaluate(VISIBLE_TEXT, "AttentionExplorer(") == 0, "the explorer's repr is on screen"
    _screenshot(page, name)


def _wait_image(page, image, previous_src: str | None) -> None:
    page.wait_for_function(
        "([img, old]) => img.src && img.src !== old && img.complete && img.naturalWidth > 0",
        arg=[image.element_handle(), previous_src],
        timeout=STEP_TIMEOUT_MS,
    )


def _message(explorer) -> str:
    return explorer.locator(".gptlib-attn-message").inner_text()


# --- a failed check, as a learner sees it -------------------------------------------------------------

WRONG_AVERAGE = (
    "def causal_average(x: torch.Tensor) -> torch.Tensor:\n"
    "    T = x.size(1)\n"
    "    return torch.tril(torch.ones(T, T)) @ x  # the running sum: never divided\n"
)


def test_failed_check_is_visible_without_scrolling(lab: Lab) -> None:
    """Lesson 02 with a wrong exercise 2.1, in a 1400x900 window: the learner runs the exercise (scrolled to
    the top of the window), its hints cell and its check, and reads the verdict without scrolling."""
    chromium = _require_browser()
    import nbformat
    from playwright.sync_api import sync_playwright

    lesson = ROOT / "lessons" / "02_attention.ipynb"
    rel = _place(lesson, lab.root)
    nb = nbformat.read(lab.root / rel, as_version=4)
    exercise = next(
        i
        for i, c in enumerate(nb.cells)
        if "exercise" in c.metadata.get("tags", []) and "causal_average" in c.source
    )
    nb.cells[exercise].source = WRONG_AVERAGE
    nbformat.write(nb, lab.root / rel)
    given = os.environ.get("GPTLIB_BROWSER_ARTIFACTS")
    artifacts = Path(given) if given else Path(tempfile.mkdtemp(prefix="gptlib-browser-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="gptlib-chromium-"))
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )  # fmt: skip
        page = context.pages[0] if context.pages else context.new_page()
        try:
            page.goto(f"{lab.url}/lab/tree/{rel}?reset&token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            run = f"""async () => {{
                const nb = window.jupyterapp.shell.currentWidget.content;
                nb.activeCellIndex = {exercise};
                await window.jupyterapp.commands.execute('notebook:run-all-above');
            }}"""
            page.evaluate(run)
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            page.evaluate(
                f"() => window.jupyterapp.shell.currentWidget.content.scrollToItem({exercise}, 'start')"
            )
            page.wait_for_timeout(500)
            for _ in range(3):  # the exercise, its hints, its check: shift-enter three times
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell-and-select-next')")
                page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            verdict = page.locator(".jp-OutputArea-output", has_text="✗ causal_average").first
            verdict.wait_for(timeout=STEP_TIMEOUT_MS)
            page.wait_for_timeout(500)
            page.screenshot(path=str(artifacts / "failed-check.png"))
            box = verdict.bounding_box()
            text = verdict.inner_text()
            assert text.startswith("✗ causal_average: causal_average(x)"), text
            assert "Hint:" in text and 'More help: show_hints("causal_average")' in text, text
            assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 900, (
                f"the verdict is not all on screen: {box} (screenshot: {artifacts / 'failed-check.png'})"
            )
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
