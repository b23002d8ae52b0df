"""The Explorer in a real browser: JupyterLab 4 and Notebook 7, Debian Chromium via Playwright.

Opens the tour notebook, runs it, and checks what a person would see: the grid's canvases
are drawn and not blank, clicking a class changes the overlay's pixels, a bad upload shows a
message and the widget keeps working. Saves screenshots to test-results/ (and docs/).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-results"

pytestmark = pytest.mark.ui

EXPLORER = '[data-testid="explorer"]'
WIDGET_TIMEOUT_MS = 240_000

# Counts the tiles (``selector``, each with data-channel) that show their part of the grid's
# sheet (background applied) and whose part of the sheet has more than ``colours`` distinct red
# levels (1: not all one colour).
DRAWN_TILES = """(grid, [selector, colours]) => {
  const sheet = grid.closest('[data-testid="explorer"]').querySelector(
    `canvas[data-sheet-for="${grid.dataset.testid}"]`);
  const cols = Number(sheet.dataset.cols), w = Number(sheet.dataset.tileW), h = Number(sheet.dataset.tileH);
  const ctx = sheet.getContext('2d');
  return Array.from(grid.querySelectorAll(selector)).filter((t) => {
    if (!getComputedStyle(t).backgroundImage.startsWith('url(')) return false;
    const c = Number(t.dataset.channel);
    const d = ctx.getImageData((c % cols) * w, Math.floor(c / cols) * h, w, h).data;
    return new Set(d.filter((_, i) => i % 4 === 0)).size > colours;
  }).length;
}"""


def non_blank_tiles(grid) -> int:
    """Activation tiles drawn from the sheet and not all one colour."""
    return grid.evaluate(DRAWN_TILES, ['[data-testid="tile"]', 1])


# True when every tile of ``grid`` (the feature grid) sits at the same column and row offset
# within its grid as the tile in the same place of ``other`` (the activation grid), and the
# two grids are side by side (same top, ``grid`` to the right).
SAME_CELLS = """(grid, other) => {
  const a = grid.getBoundingClientRect(), b = other.getBoundingClientRect();
  if (Math.abs(a.top - b.top) > 1 || a.left < b.right) return false;
  const mine = grid.querySelectorAll('.cv-tile'), theirs = other.querySelectorAll('.cv-tile');
  if (mine.length !== theirs.length || mine.length === 0) return false;
  return Array.from(mine).every((t, i) => {
    const p = t.getBoundingClientRect(), q = theirs[i].getBoundingClientRect();
    return Math.abs((p.left - a.left) - (q.left - b.left)) <= 1 && Math.abs(p.top - q.top) <= 1;
  });
}"""

PIXELS = """(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"""


def run_notebook(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(
        """async () => {
          const app = window.jupyterapp;
          const panel = app.shell.currentWidget;
          if (!panel || !panel.sessionContext) return false;
          await panel.sessionContext.ready;
          return panel.sessionContext.session?.kernel?.connectionStatus === 'connected';
        }""",
        timeout=120_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(
        f'{EXPLORER} [data-testid="grid"][data-count]:not([data-count="0"])',
        timeout=WIDGET_TIMEOUT_MS,
    )


def channels_by_mean(layer: str) -> list[int]:
    """The tour's explorer image (the cat sample) through EfficientNet-Lite0, computed here in
    the test process: channel indices of ``layer`` by descending mean activation."""
    import cnnvis_widget as cv

    bundle = cv.load_model()
    x = bundle.preprocess(cv.sample_image("cat"))
    means = cv.activations(bundle.module, x, [layer])[layer][0].mean(dim=(1, 2))
    return [int(c) for c in means.argsort(descending=True, stable=True)]


def png_of_sample(name: str) -> bytes:
    import io

    import cnnvis_widget as cv

    buffer = io.BytesIO()
    cv.sample_image(name).save(buffer, format="PNG")
    return buffer.getvalue()


def dismiss_notifications(page) -> None:
    """Close JupyterLab's "get notified about news?" toast so it does not cover the widget."""
    button = page.locator(".jp-toast-button", has_text="No")
    if button.count():
        button.first.click()


def wait_idle(page, explorer) -> None:
    explorer.locator('[data-testid="busy"][data-busy="false"]').wait_for(
        state="attached", timeout=60_000
    )


def select_layer(page, explorer, name: str) -> float:
    """Click a layer in the tree; return milliseconds from the click event to the grid drawn
    for it (measured in the page: click listener to the grid's data-layer attribute with its
    tile sheet shown)."""
    explorer.locator('[data-testid="layer-filter"]').fill(name)
    row = explorer.locator(f'[data-testid="layer"][data-name="{name}"]')
    row.scroll_into_view_if_needed()
    row.evaluate(
        """(row, name) => {
          const grid = row.closest('[data-testid="explorer"]').querySelector('[data-testid="grid"]');
          window.__gridTiming = {};
          row.addEventListener('click', () => { window.__gridTiming.click = performance.now(); },
                               { once: true, capture: true });
          const observer = new MutationObserver(() => {
            if (grid.getAttribute('data-layer') === name && grid.getAttribute('data-sheet') === 'ready') {
              window.__gridTiming.drawn = performance.now();
              observer.disconnect();
            }
          });
          observer.observe(grid, { attributes: true });
        }""",
        name,
    )
    row.click()
    explorer.locator(f'[data-testid="grid"][data-layer="{name}"][data-sheet="ready"]').wait_for(
        timeout=60_000
    )
    timing = page.evaluate("() => window.__gridTiming")
    return float(timing["drawn"] - timing["click"])


def test_explorer_in_jupyterlab(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    # pip install enabled the server extension: kernel websockets without Nagle's delay.
    assert "kernel websockets send without Nagle" in (ARTIFACTS / "jupyter.log").read_text()
    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)

    # Top-5 predictions of the cat photo, as text.
    predictions = explorer.locator('[data-testid="prediction"]')
    assert predictions.count() == 5
    labels = " ".join(predictions.all_inner_texts()).lower()
    assert "cat" in labels or "tabby" in labels

    # Layer browser -> filter grid: one canvas per channel, drawn, not blank.
    elapsed_ms = select_layer(page, explorer, "_blocks.2")
    grid = explorer.locator('[data-testid="grid"]')
    assert grid.get_attribute("data-count") == "24"
    assert explorer.locator('[data-testid="tile"]').count() == 24
    assert non_blank_tiles(grid) >= 20
    warm_ms = select_layer(page, explorer, "_blocks.4")
    (ARTIFACTS / "click_to_grid_ms.txt").write_text(
        f"first layer click (_blocks.2, 24x56x56): {elapsed_ms:.0f} ms\n"
        f"later layer click (_blocks.4, 40x28x28): {warm_ms:.0f} ms\n"
    )
    print(f"click to drawn grid: first {elapsed_ms:.0f} ms, later {warm_ms:.0f} ms")

    # Grad-CAM follows the selected layer; clicking another class changes the overlay.
    overlay = explorer.locator('canvas[data-testid="overlay"]')
    page.wait_for_function(
        "(c) => c.getAttribute('data-cam-layer') === '_blocks.4'", arg=overlay.element_handle()
    )
    select_layer(page, explorer, "_swish")
    wait_idle(page, explorer)
    before = overlay.evaluate(PIXELS)
    first_class = overlay.get_attribute("data-class")
    target = predictions.nth(3)
    target_index = target.get_attribute("data-index")
    assert target_index != first_class
    target.click()
    page.wait_for_function(
        "([c, i]) => c.getAttribute('data-class') === i",
        arg=[overlay.element_handle(), target_index],
    )
    wait_idle(page, explorer)
    after = overlay.evaluate(PIXELS)
    changed = sum(1 for a, b in zip(before, after, strict=True) if a != b)
    assert changed > len(before) * 0.01, f"only {changed} channel values changed"
    assert target.get_attribute("data-selected") == "true"
    dismiss_notifications(page)
    explorer.screenshot(path=str(ARTIFACTS / "explorer-jupyterlab.png"))
    shutil.copy(ARTIFACTS / "explorer-jupyterlab.png", ROOT / "docs" / "explorer.png")

    # Any class by name: the search box takes a label.
    search = explorer.locator('[data-testid="class-search"]')
    search.fill("goldfish")
    search.dispatch_event("change")
    page.wait_for_function(
        "(c) => c.getAttribute('data-class') === '1'", arg=overlay.element_handle(), timeout=60_000
    )
    wait_idle(page, explorer)
    target.click()  # back to the top-5 class
    page.wait_for_function(
        "([c, i]) => c.getAttribute('data-class') === i",
        arg=[overlay.element_handle(), target_index],
    )
    wait_idle(page, explorer)
    after = overlay.evaluate(PIXELS)

    # Colormap and sort order are browser-side too.
    explorer.locator('[data-testid="colormap"]').select_option("magma")
    page.wait_for_function(
        f"([c, before]) => ({PIXELS})(c).join() !== before.join()",
        arg=[overlay.element_handle(), after],
    )
    after = overlay.evaluate(PIXELS)
    explorer.locator('[data-testid="sort"]').select_option("mean")
    expected = channels_by_mean("_swish")
    tiles = explorer.locator('[data-testid="tile"]')
    page.wait_for_function(
        "([t, c]) => t.getAttribute('data-channel') === String(c)",
        arg=[tiles.first.element_handle(), expected[0]],
    )
    shown = [int(tiles.nth(i).get_attribute("data-channel")) for i in range(5)]
    assert shown == expected[:5]

    # Opacity is drawn in the browser: the overlay changes without a kernel round trip.
    explorer.locator('[data-testid="opacity"]').fill("0")
    no_heatmap = overlay.evaluate(PIXELS)
    assert no_heatmap != after

    # The method picker comes from the registry; a signed pixel method replaces the overlay.
    explorer.locator('[data-testid="opacity"]').fill("0.6")
    picker = explorer.locator('select[data-testid="method-select"]')
    assert picker.locator("option").count() == 14
    before_method = overlay.evaluate(PIXELS)
    picker.select_option("integrated_gradients")
    steps = explorer.locator('[data-testid="method-params"] input[data-param="steps"]')
    steps.wait_for(timeout=10_000)
    assert steps.input_value() == "50"
    progress = explorer.locator('[data-testid="cam-progress"]')
    explorer.locator('[data-testid="cam-progress"][data-state="done"]').wait_for(
        state="attached", timeout=60_000
    )  # the 50-step map, so that the next "done" can only be the 8-step one
    first_job = progress.get_attribute("data-job")
    steps.fill("8")
    steps.dispatch_event("change")
    page.wait_for_function(
        "([p, old]) => p.getAttribute('data-state') === 'done' && p.getAttribute('data-job') !== old",
        arg=[progress.element_handle(), first_job],
        timeout=60_000,
    )
    assert overlay.get_attribute("data-method") == "integrated_gradients"
    assert overlay.get_attribute("data-partial") == "false"
    assert overlay.evaluate(PIXELS) != before_method
    # Drawn as |value| by default; the display switch shows the sign (diverging colormap).
    assert overlay.get_attribute("data-signed") == "false"
    explorer.locator('select[data-testid="map-sign"]').select_option("signed")
    page.wait_for_function(
        "(c) => c.getAttribute('data-signed') === 'true'", arg=overlay.element_handle()
    )
    explorer.locator('select[data-testid="map-sign"]').select_option("absolute")
    explorer.screenshot(path=str(ARTIFACTS / "explorer-integrated-gradients.png"))
    picker.select_option("gradcam")
    page.wait_for_function(
        "(c) => c.getAttribute('data-method') === 'gradcam'", arg=overlay.element_handle()
    )

    streamed_smoothgrad(page, explorer, overlay, picker)
    cancelled_occlusion_while_kernel_answers(page, explorer, overlay, picker)
    comparison_panel(page, explorer)
    picker.select_option("gradcam")
    page.wait_for_function(
        "(c) => c.getAttribute('data-method') === 'gradcam'", arg=overlay.element_handle()
    )

    # A tile click enlarges that channel.
    explorer.locator('[data-testid="tile"]').nth(5).click()
    assert explorer.locator('canvas[data-testid="channel-view"]').is_visible()
    explorer.screenshot(path=str(ARTIFACTS / "explorer-channel.png"))
    live_synthesis(page, explorer)
    adversarial_view(page, explorer)
    erhan_restarts(page, explorer)

    # A file that is not an image: a visible message, and the widget keeps working.
    explorer.locator('[data-testid="upload"]').set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}]
    )
    message = explorer.locator('[data-testid="message"]')
    message.wait_for(state="visible", timeout=60_000)
    assert "notes.txt" in message.inner_text() and message.get_attribute("data-level") == "error"
    select_layer(page, explorer, "_blocks.5")
    assert explorer.locator('[data-testid="tile"]').count() == 80
    assert non_blank_tiles(grid) >= 60

    # A real photo uploaded through the file picker replaces the image and the predictions.
    explorer.locator('[data-testid="upload"]').set_input_files(
        files=[{"name": "coffee.png", "mimeType": "image/png", "buffer": png_of_sample("coffee")}]
    )
    explorer.locator('[data-testid="prediction"][data-index="967"]').wait_for(timeout=60_000)
    message.wait_for(state="hidden", timeout=10_000)
    assert "espresso" in predictions.first.inner_text()


def kernel_print(page, code: str, timeout_ms: int = 120_000) -> str:
    """Run ``code`` in the notebook's kernel (as another cell would) and return what it
    printed ("(no reply ...)" when the kernel does not answer within ``timeout_ms``)."""
    return page.evaluate(
        """async ([code, timeoutMs]) => {
          const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          const future = kernel.requestExecute({ code, store_history: false });
          let text = '';
          future.onIOPub = (msg) => {
            if (msg.header.msg_type === 'stream') text += msg.content.text;
            if (msg.header.msg_type === 'error') text += msg.content.evalue;
          };
          const late = new Promise((resolve) => setTimeout(() => resolve('late'), timeoutMs));
          const how = await Promise.race([future.done.then(() => 'done'), late]);
          return how === 'done' ? text : `(no reply within ${timeoutMs} ms) ${text}`;
        }""",
        [code, timeout_ms],
    )


# For a failing test: the explorer's job state and every thread's stack, from the kernel.
THREAD_DUMP = """
import sys as _sys, threading as _th, traceback as _tb
print("overlay_job:", explorer.overlay_job)
for _t in _th.enumerate():
    print("---", _t.name)
    _f = _sys._current_frames().get(_t.ident)
    if _f is not None:
        print("".join(_tb.format_stack(_f)[-8:]))
"""


# One forward + input-gradient backward of the explorer's model on its image, in the kernel.
FORWARD_BACKWARD_MS = """
import statistics as _s, time as _t, cnnvis_widget as _cv
_b = _cv.load_model(); _x = _b.preprocess(_cv.sample_image("cat"))
_cv.attribute(_b.module, _x, "saliency", target=281)
_ms = []
for _ in range(5):
    _t0 = _t.perf_counter(); _cv.attribute(_b.module, _x, "saliency", target=281)
    _ms.append(1000 * (_t.perf_counter() - _t0))
print(_s.median(_ms))
"""


def streamed_smoothgrad(page, explorer, overlay, picker) -> None:
    """SmoothGrad streams: partial maps are drawn (marked partial) with progress, then the
    final map; the time from the pick to the first drawn partial map is recorded."""
    overlay.evaluate(
        """(c) => {
          window.__firstPartial = {};
          const select = c.closest('[data-testid="explorer"]')
            .querySelector('select[data-testid="method-select"]');
          select.addEventListener('change', () => { window.__firstPartial.pick = performance.now(); },
                                  { once: true, capture: true });
          const progress = c.closest('[data-testid="explorer"]')
            .querySelector('[data-testid="cam-progress"]');
          const replies = new MutationObserver(() => {
            const t = performance.now();
            if (progress.getAttribute('data-state') === 'running' && !window.__firstPartial.reply)
              window.__firstPartial.reply = t;  // the kernel's answer to the pick
            if (Number(progress.getAttribute('data-fraction')) > 0 && !window.__firstPartial.data) {
              window.__firstPartial.data = t;  // the first partial map has arrived
              replies.disconnect();
            }
          });
          replies.observe(progress, { attributes: true });
          const observer = new MutationObserver(() => {
            if (c.getAttribute('data-method') === 'smoothgrad' &&
                c.getAttribute('data-partial') === 'true') {
              window.__firstPartial.drawn = performance.now();
              window.__firstPartial.fraction = c.closest('[data-testid="explorer"]')
                .querySelector('[data-testid="cam-progress"]').getAttribute('data-fraction');
              observer.disconnect();
            }
          });
          observer.observe(c, { attributes: true });
        }"""
    )
    picker.select_option("smoothgrad")
    page.wait_for_function("() => window.__firstPartial.drawn !== undefined", timeout=60_000)
    first = page.evaluate("() => window.__firstPartial")
    first_ms = float(first["drawn"] - first["pick"])
    assert float(first["fraction"]) < 1.0  # a partial map, drawn before the end
    explorer.locator('[data-testid="cam-progress"][data-state="done"]').wait_for(
        state="attached", timeout=120_000
    )
    assert overlay.get_attribute("data-partial") == "false"
    assert overlay.get_attribute("data-method") == "smoothgrad"
    fb_ms = float(kernel_print(page, FORWARD_BACKWARD_MS))
    reply_ms = float(first.get("reply", first["drawn"]) - first["pick"])
    data_ms = float(first.get("data", first["drawn"]) - first["pick"])
    (ARTIFACTS / "first_partial_ms.txt").write_text(
        f"pick SmoothGrad -> first partial map drawn: {first_ms:.0f} ms "
        f"(first partial at fraction {float(first['fraction']):.2f})\n"
        f"  kernel's reply to the pick shown: {reply_ms:.0f} ms; "
        f"first partial map received: {data_ms:.0f} ms\n"
        f"one forward+backward of Lite0 in the kernel (median of 5): {fb_ms:.0f} ms\n"
        f"ratio: {first_ms / fb_ms:.1f}\n"
    )
    print(f"first partial SmoothGrad map drawn after {first_ms:.0f} ms; one F+B {fb_ms:.0f} ms")


def cancelled_occlusion_while_kernel_answers(page, explorer, overlay, picker) -> None:
    """A long occlusion runs in the background: the kernel still answers a layer click (the
    grid is drawn while the job is still running), then Stop cancels it and the partial map
    stays, marked as stopped."""
    picker.select_option("occlusion")
    stride = explorer.locator('[data-testid="method-params"] input[data-param="stride"]')
    stride.wait_for(timeout=10_000)
    stride.fill("2")  # 9409 occluded images: about a minute here, long enough to stop
    stride.dispatch_event("change")
    progress = explorer.locator('[data-testid="cam-progress"]')
    page.wait_for_function(
        """(p) => p.getAttribute('data-state') === 'running' &&
                  Number(p.getAttribute('data-fraction')) > 0""",
        arg=progress.element_handle(),
        timeout=60_000,
    )
    select_layer(page, explorer, "_blocks.3")
    assert progress.get_attribute("data-state") == "running", "the job ended before the grid came"
    explorer.locator('[data-testid="cam-cancel"]').click()
    try:
        page.wait_for_function(
            "(p) => p.getAttribute('data-state') !== 'running'",
            arg=progress.element_handle(),
            timeout=60_000,
        )
    except Exception:
        (ARTIFACTS / "kernel_threads.txt").write_text(kernel_print(page, THREAD_DUMP, 20_000))
        raise
    assert progress.get_attribute("data-state") == "cancelled", (
        f"the job ended as {progress.get_attribute('data-state')!r} after Stop"
    )
    assert float(progress.get_attribute("data-fraction")) < 1.0
    assert overlay.get_attribute("data-partial") == "true"
    assert overlay.get_attribute("data-method") == "occlusion"
    explorer.screenshot(path=str(ARTIFACTS / "explorer-cancelled.png"))


def comparison_panel(page, explorer) -> None:
    """Three methods side by side, each drawn over the image with its deletion / insertion
    scores."""
    panel = explorer.locator('[data-testid="compare"]')
    panel.locator("summary").click()
    for name in ("gradcam", "saliency", "layercam"):
        panel.locator(f'[data-testid="compare-pick-{name}"]').check()
    page.wait_for_function(
        "(h) => h.textContent === '3 maps'",
        arg=panel.locator('[data-testid="compare-hint"]').element_handle(),
    )
    panel.locator('[data-testid="compare-run"]').click()
    done = panel.locator('[data-testid="compare-cell"][data-state="done"]')
    page.wait_for_function(
        '(p) => p.querySelectorAll(\'[data-testid="compare-cell"][data-state="done"]\').length === 3',
        arg=panel.element_handle(),
        timeout=180_000,
    )
    shown = {done.nth(i).get_attribute("data-method") for i in range(3)}
    assert shown == {"gradcam", "saliency", "layercam"}
    for i in range(3):
        cell = done.nth(i)
        assert 0 <= float(cell.get_attribute("data-deletion")) <= 1
        assert 0 <= float(cell.get_attribute("data-insertion")) <= 1
        assert "deletion" in cell.inner_text() and "insertion" in cell.inner_text()
        pixels = cell.locator("canvas").evaluate(PIXELS)
        assert len(set(pixels[0::4])) > 10, "the cell's canvas looks blank"
    panel.screenshot(path=str(ARTIFACTS / "explorer-comparison.png"))
    shutil.copy(ARTIFACTS / "explorer-comparison.png", ROOT / "docs" / "comparison.png")


def test_explorer_in_notebook7(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/notebooks/tour.ipynb")
    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    assert explorer.locator('[data-testid="prediction"]').count() == 5
    select_layer(page, explorer, "_blocks.0")
    assert explorer.locator('[data-testid="tile"]').count() == 16
    assert non_blank_tiles(explorer.locator('[data-testid="grid"]')) >= 12
    # The synthesis panel works here too: a short channel visualization runs to its end.
    explorer.locator('[data-testid="tile"]').nth(3).click()
    panel = explorer.locator('[data-testid="synthesis"]')
    steps = panel.locator('[data-testid="synth-params"] input[data-param="steps"]')
    steps.fill("20")
    steps.dispatch_event("change")
    page.wait_for_timeout(300)
    panel.locator('[data-testid="synth-start"]').click()
    panel.locator('[data-testid="synth-status"][data-state="done"]').wait_for(
        state="attached", timeout=120_000
    )
    canvas = panel.locator('[data-testid="synth-canvas"]')
    assert (
        canvas.get_attribute("data-final") == "true" and canvas.get_attribute("data-step") == "20"
    )
    assert len(set(canvas.evaluate(PIXELS)[0::4])) > 10, "the visualization looks blank"
    explorer.screenshot(path=str(ARTIFACTS / "explorer-notebook7.png"))
    vscode_dark_theme(explorer)


# What a VS Code notebook webview gives the widget: --vscode-* theme variables (here from its
# "Dark Modern" theme) and no --jp-* ones; every --jp-* variable the widget's CSS reads is made
# invalid on the widget.
VSCODE_DARK = {
    "--vscode-editor-background": "rgb(31, 31, 31)",
    "--vscode-editor-foreground": "rgb(204, 204, 204)",
    "--vscode-descriptionForeground": "rgb(157, 157, 157)",
    "--vscode-disabledForeground": "rgb(126, 126, 126)",
    "--vscode-editorWidget-background": "rgb(32, 32, 32)",
    "--vscode-widget-border": "rgb(49, 49, 49)",
    "--vscode-focusBorder": "rgb(0, 120, 212)",
    "--vscode-input-background": "rgb(49, 49, 49)",
    "--vscode-input-border": "rgb(60, 60, 60)",
}


def vscode_dark_theme(explorer) -> None:
    """The widget takes VS Code's theme colours where JupyterLab's are missing: page, text,
    muted text, inputs and buttons."""
    css = (ROOT / "js" / "explorer.css").read_text()
    jp_variables = sorted(set(re.findall(r"var\((--jp-[\w-]+)", css)))
    assert len(jp_variables) >= 10
    explorer.evaluate(
        """(el, [vscode, jp]) => {
             for (const [name, value] of Object.entries(vscode)) el.style.setProperty(name, value);
             for (const name of jp) el.style.setProperty(name, 'initial');
           }""",
        [VSCODE_DARK, jp_variables],
    )
    style = explorer.evaluate(
        """(el) => {
             const of = (selector) => getComputedStyle(el.querySelector(selector));
             const s = getComputedStyle(el);
             return {
               background: s.backgroundColor,
               text: s.color,
               border: s.borderTopColor,
               muted: of('.cv-muted').color,
               select: of('[data-testid="method-select"]').backgroundColor,
               search: of('.cv-class-search').backgroundColor,
               button: of('[data-testid="synth-start"]').backgroundColor,
               buttonText: of('[data-testid="synth-start"]').color,
             };
           }"""
    )
    assert style == {
        "background": VSCODE_DARK["--vscode-editor-background"],
        "text": VSCODE_DARK["--vscode-editor-foreground"],
        "border": VSCODE_DARK["--vscode-widget-border"],
        "muted": VSCODE_DARK["--vscode-disabledForeground"],
        "select": VSCODE_DARK["--vscode-input-background"],
        "search": VSCODE_DARK["--vscode-input-background"],
        "button": VSCODE_DARK["--vscode-editorWidget-background"],
        "buttonText": VSCODE_DARK["--vscode-editor-foreground"],
    }
    explorer.screenshot(path=str(ARTIFACTS / "explorer-vscode-dark.png"))


def live_synthesis(page, explorer) -> None:
    """A channel visualization of the clicked tile streams frames that change, the objective
    curve grows, the kernel answers another cell meanwhile, Stop ends it within a step or two
    and Resume continues it."""
    panel = explorer.locator('[data-testid="synthesis"]')
    panel.scroll_into_view_if_needed()
    panel.locator('[data-testid="synth-kind"]').select_option("feature")
    steps = panel.locator('[data-testid="synth-params"] input[data-param="steps"]')
    steps.fill("4000")  # far more than the test waits for
    steps.dispatch_event("change")
    page.wait_for_timeout(300)
    panel.locator('[data-testid="synth-start"]').click()
    status = panel.locator('[data-testid="synth-status"]')
    canvas = panel.locator('[data-testid="synth-canvas"]')
    page.wait_for_function(
        "(c) => Number(c.getAttribute('data-step')) > 0",
        arg=canvas.element_handle(),
        timeout=120_000,
    )
    first_step = int(canvas.get_attribute("data-step"))
    first_pixels = canvas.evaluate(PIXELS)
    # Frames drawn and optimizer steps per second over 3 s, for the record (not asserted).
    rates = canvas.evaluate(
        """(c) => new Promise((resolve) => {
             const start = performance.now(), step0 = Number(c.dataset.step);
             let frames = 0;
             const observer = new MutationObserver(() => { frames += 1; });
             observer.observe(c, { attributes: true, attributeFilter: ['data-step'] });
             setTimeout(() => {
               observer.disconnect();
               const seconds = (performance.now() - start) / 1000;
               resolve([frames / seconds, (Number(c.dataset.step) - step0) / seconds]);
             }, 3000);
           })"""
    )
    (ARTIFACTS / "synthesis_rate.txt").write_text(
        f"channel visualization in JupyterLab: {rates[0]:.1f} frames drawn/s, "
        f"{rates[1]:.1f} optimizer steps/s\n"
    )
    page.wait_for_function(
        "([c, s]) => Number(c.getAttribute('data-step')) >= s + 10",
        arg=[canvas.element_handle(), first_step],
        timeout=120_000,
    )
    later_pixels = canvas.evaluate(PIXELS)
    changed = sum(a != b for a, b in zip(first_pixels, later_pixels, strict=False))
    assert changed > len(first_pixels) // 20, "the streamed frames do not change"
    assert int(panel.locator('[data-testid="synth-curve"]').get_attribute("data-points")) > 10
    # The kernel answers another cell while the optimization runs.
    assert kernel_print(page, "print(6 * 7)", 60_000).strip() == "42"
    assert status.get_attribute("data-state") == "running"
    before_stop = int(canvas.get_attribute("data-step"))
    panel.locator('[data-testid="synth-stop"]').click()
    page.wait_for_function(
        "(s) => s.getAttribute('data-state') === 'cancelled'",
        arg=status.element_handle(),
        timeout=30_000,
    )
    page.wait_for_function(
        "(c) => c.getAttribute('data-final') === 'true'",
        arg=canvas.element_handle(),
        timeout=30_000,
    )
    stopped_at = int(canvas.get_attribute("data-step"))
    assert before_stop <= stopped_at < 4000
    panel.screenshot(path=str(ARTIFACTS / "explorer-synthesis.png"))
    shutil.copy(ARTIFACTS / "explorer-synthesis.png", ROOT / "docs" / "synthesis.png")
    resume = panel.locator('[data-testid="synth-resume"]')
    assert resume.is_enabled()
    resume.click()
    page.wait_for_function(
        "([c, s]) => Number(c.getAttribute('data-step')) > s",
        arg=[canvas.element_handle(), stopped_at],
        timeout=120_000,
    )
    panel.locator('[data-testid="synth-stop"]').click()
    page.wait_for_function(
        "(s) => s.getAttribute('data-state') === 'cancelled'",
        arg=status.element_handle(),
        timeout=30_000,
    )
    panel.locator('[data-testid="synth-pin"]').click()
    panel.locator('[data-testid="synth-pin-item"]').first.wait_for(timeout=30_000)

    # The layer's feature-visualization grid, beside the activation grid: tiles in the
    # activation grid's order, filled batch by batch (not grey once drawn); then stopped.
    explorer.locator('[data-testid="synth-layer"]').click()
    features = explorer.locator('[data-testid="feature-grid"]')
    page.wait_for_function(
        "(g) => g.querySelectorAll('.cv-synth-tile[data-channel]').length > 0",
        arg=features.element_handle(),
        timeout=240_000,
    )
    layer = explorer.locator('[data-testid="grid"]').get_attribute("data-layer")
    assert features.get_attribute("data-layer") == layer
    tiles = features.locator(".cv-synth-tile[data-channel]")
    activation_tiles = explorer.locator('[data-testid="tile"]')
    assert tiles.count() == activation_tiles.count()
    order = [tiles.nth(i).get_attribute("data-channel") for i in range(4)]
    assert order == [activation_tiles.nth(i).get_attribute("data-channel") for i in range(4)]
    # Beside it, tile for tile: the same column and row offsets within each grid.
    assert features.evaluate(SAME_CELLS, explorer.locator('[data-testid="grid"]').element_handle())
    # Batches of 4 channels on a CPU: wait for two of them, drawn (not grey) and shown.
    page.wait_for_function(
        f"(g) => ({DRAWN_TILES})(g, ['.cv-synth-tile', 10]) >= 8",
        arg=features.element_handle(),
        timeout=240_000,
    )
    # A click on a feature tile picks that channel, as a click on its activation tile does.
    picked = tiles.nth(2).get_attribute("data-channel")
    tiles.nth(2).click()
    explorer.locator(
        f'[data-testid="grid"] .cv-tile[data-channel="{picked}"][data-selected="true"]'
    ).wait_for(state="attached", timeout=30_000)
    assert (
        features.locator(f'.cv-tile[data-channel="{picked}"]').get_attribute("data-selected")
        == "true"
    )
    explorer.locator('[data-testid="synth-layer-stop"]').click()
    explorer.locator('[data-testid="feature-grid-status"][data-state="cancelled"]').wait_for(
        state="attached", timeout=60_000
    )
    explorer.locator(".cv-grid-pair").screenshot(path=str(ARTIFACTS / "explorer-feature-grid.png"))
    # Beside another layer's activations it would mislead: hidden until its layer is back.
    other = "_blocks.5" if layer != "_blocks.5" else "_blocks.4"
    select_layer(page, explorer, other)
    assert features.is_hidden()
    select_layer(page, explorer, layer)
    assert features.is_visible()
    tiles.nth(2).click()  # a layer change cleared the channel; the next steps need one
    explorer.locator(
        f'[data-testid="grid"] .cv-tile[data-channel="{picked}"][data-selected="true"]'
    ).wait_for(state="attached", timeout=30_000)


def adversarial_view(page, explorer) -> None:
    """FGSM at 2 grey levels: original, perturbation and adversarial image drawn, with the
    prediction before and after as text."""
    panel = explorer.locator('[data-testid="synthesis"]')
    panel.locator('[data-testid="synth-kind"]').select_option("adversarial")
    page.wait_for_timeout(300)
    panel.locator('[data-testid="synth-start"]').click()
    view = panel.locator('[data-testid="synth-adversarial"]')
    view.wait_for(state="visible", timeout=120_000)
    before = panel.locator('[data-testid="synth-before"]').inner_text()
    after = panel.locator('[data-testid="synth-after"]').inner_text()
    assert before.startswith("before: ") and "%" in before
    assert after.startswith("after (ε = 2/255): ") and "%" in after
    original, perturbation, adversarial = view.locator("canvas").all()
    for canvas in (original, adversarial):
        assert len(set(canvas.evaluate(PIXELS)[0::4])) > 10, "an image canvas looks blank"
    # FGSM moves every value by +-epsilon: magnified, 0 or 255 (less where clipped at 0 or 1).
    red = perturbation.evaluate(PIXELS)[0::4]
    assert sum(v in (0, 255) for v in red) > 0.95 * len(red)
    panel.screenshot(path=str(ARTIFACTS / "explorer-adversarial.png"))


def erhan_restarts(page, explorer) -> None:
    """Erhan's norm-constrained ascent from 3 random starts: the 3 optima drawn side by side
    in one strip, captioned with how much they agree (as text)."""
    panel = explorer.locator('[data-testid="synthesis"]')
    panel.locator('[data-testid="synth-kind"]').select_option("erhan")
    page.wait_for_timeout(300)
    form = panel.locator('[data-testid="synth-params"]')
    for name, value in (("steps", "8"), ("restarts", "3"), ("size", "32")):
        field = form.locator(f'input[data-param="{name}"]')
        field.fill(value)
        field.dispatch_event("change")
        page.wait_for_timeout(200)
    panel.locator('[data-testid="synth-start"]').click()
    canvas = panel.locator('[data-testid="synth-canvas"][data-final="true"][data-images="3"]')
    canvas.wait_for(state="visible", timeout=120_000)
    width, height = canvas.evaluate("c => [c.width, c.height]")
    assert (width, height) == (3 * 32 + 2 * 2, 32)
    pixels = canvas.evaluate(PIXELS)
    assert len(set(pixels[0::4])) > 10, "the optima look blank"
    caption = panel.locator('[data-testid="synth-label"]').inner_text()
    assert "restarts agree: correlation" in caption, caption
    panel.screenshot(path=str(ARTIFACTS / "explorer-erhan.png"))
