"""Real-browser tests: the latent sliders (Voilà serves a one-widget page), the docs site's notebook 4 page and its
playground page, in Debian's Chromium driven by Playwright.

Needs tools/install_browser.sh (Chromium from apt, Voilà and Playwright from pip); fails, never skips, without them.
DCGANLIB_BROWSER_GENERATOR picks the generator file (default: the shipped one); DCGANLIB_WRITE_FIGS=1 also
writes figs/latent_sliders.png and figs/slider_latency.json (the time from a slider move to the new image in the
page, p50 and p95, reported in the README); DCGANLIB_BROWSER_BREAK=1 detaches the page's render callback, which
must fail.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from browser_session import Watchdog, chromium_tab, require_tools, voila_server, watchdog
from kit import poll
from PIL import Image
from repo_root import ROOT

from dcganlib import directions
from dcganlib.metrics import classifier_probabilities
from dcganlib.models import generate, make_noise
from dcganlib.pretrained import SHIPPED_CONDITIONAL_GENERATOR, SHIPPED_GENERATOR, load_generator
from dcganlib.sliders import latent_sliders

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parent / "browser" / "latent_sliders.ipynb"
CONDITIONAL_PAGE = Path(__file__).resolve().parent / "browser" / "conditional_sliders.ipynb"
FIGURE = ROOT / "figs" / "latent_sliders.png"
LATENCY = ROOT / "figs" / "slider_latency.json"
# Past this the watchdog kills the server and the browser, so a hang fails the test instead of blocking CI.
TEST_TIMEOUT_S = 150
PAGE_LOAD_MS = 60_000  # the kernel imports torch and loads the generator before the widget appears
UPDATE_S = 10  # one slider move is one kernel round trip and a forward pass of milliseconds
# Mean absolute difference of 0-255 RGB values: the same PNG shown again is ~0; a full move of one
# direction slider changes a few units (pixels change a lot, but only where strokes move).
SAME_MAX = 0.25
CHANGED_MIN = 1.0
MOVES = 24  # slider moves timed from key press to image load
# Between timed moves: the front end holds a new value until the kernel reports idle after the last one, so moves
# sent back to back also time that wait (~60 ms a move here, where a lone move takes ~30).
PAUSE_MS = 250
# Page-side clocks: every key press, and every load of a new image into the widget's <img>.
LISTEN = """() => {
  window.dcganTimes = {keys: [], loads: []};
  document.addEventListener("keydown", () => window.dcganTimes.keys.push(performance.now()), true);
  document.querySelector("img.dcgan-latent-image")
    .addEventListener("load", () => window.dcganTimes.loads.push(performance.now()));
}"""


def _generator_path() -> Path:
    path = Path(os.environ.get("DCGANLIB_BROWSER_GENERATOR") or SHIPPED_GENERATOR)
    if not path.is_file():
        pytest.fail(f"no generator at {path}: set DCGANLIB_BROWSER_GENERATOR to an exported .pt", pytrace=False)
    return path


# Each fixture holds one context manager of browser_session, so pytest tears each down on its own, failed test or not.
@pytest.fixture
def dog() -> Iterator[Watchdog]:
    """The test's overall time limit: kills server and browser and fails the test once it passes."""
    with watchdog(TEST_TIMEOUT_S) as limit:
        yield limit


@contextmanager
def served(notebook: Path, tmp_path: Path, dog: Watchdog, env: dict[str, str]) -> Iterator:
    """A Chromium page (fresh profile) showing the one-widget `notebook` that Voilà serves, its image loaded; server,
    kernel and browser stopped afterwards."""
    require_tools()
    with (voila_server(notebook, tmp_path, dog, env=env) as url,
          chromium_tab(tmp_path / "chromium-profile", dog, viewport={"width": 900, "height": 700}) as tab):
        tab.set_default_timeout(PAGE_LOAD_MS)
        tab.goto(url)
        tab.wait_for_function(
            "() => { const img = document.querySelector('img.dcgan-latent-image');"
            " return img !== null && img.complete && img.naturalWidth > 0; }"
        )
        tab.set_default_timeout(UPDATE_S * 1000)
        yield tab


@pytest.fixture
def page(tmp_path: Path, dog: Watchdog):
    """Notebook 05's sliders on the chosen generator, in the browser."""
    with served(PAGE, tmp_path, dog, {"DCGANLIB_BROWSER_GENERATOR": str(_generator_path())}) as tab:
        yield tab


@pytest.fixture
def conditional_page(tmp_path: Path, dog: Watchdog):
    """Notebook 06's sliders on the shipped conditional generator, in the browser."""
    with served(CONDITIONAL_PAGE, tmp_path, dog, {}) as tab:
        yield tab


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference per channel value, at the best alignment of the smaller image inside the larger.

    An element at a fractional CSS position is screenshotted a pixel taller or wider than the image it shows.
    """
    small, large = sorted((a, b), key=lambda image: image.size)
    dy, dx = large.shape[0] - small.shape[0], large.shape[1] - small.shape[1]
    if not (0 <= dy <= 2 and 0 <= dx <= 2):
        return 255.0
    h, w = small.shape[:2]
    return min(float(np.abs(large[y:y + h, x:x + w] - small).mean()) for y in range(dy + 1) for x in range(dx + 1))


def _wait_for_image(image, accept: Callable[[np.ndarray], bool], save_as: Path) -> np.ndarray:
    """Screenshots the image element until accept() holds or UPDATE_S pass; saves and returns the last one."""
    png = poll(lambda: image.screenshot(animations="disabled"), lambda png: accept(_decode(png)), UPDATE_S,
               interval=0.2)
    save_as.write_bytes(png)
    return _decode(png)


def _slider(page, description: str):
    """The ipywidgets slider whose label is exactly description."""
    return page.locator(".widget-slider").filter(has=page.get_by_text(description, exact=True))


def _press(page, description: str, key: str, times: int = 1) -> str:
    """Focuses a slider's handle, presses key as a user would, and returns the slider's shown readout."""
    slider = _slider(page, description)
    slider.locator(".noUi-handle").focus()
    for _ in range(times):
        page.keyboard.press(key)
    return slider.locator(".widget-readout").inner_text()


def _page_explorer(generator_path: Path):
    """The explorer the page builds: notebook 05's directions and call, on the same generator."""
    generator = load_generator(generator_path)
    named = directions.principal_directions(generator, 4)
    towards = directions.class_directions(generator, [0, 1, 7])
    return generator, latent_sliders(generator, directions=named + towards)


def _digit_probability(image: np.ndarray, digit: int) -> float:
    """The shipped classifier's probability that an RGB 0-255 image shows `digit`."""
    grey = torch.from_numpy(image.mean(axis=2)).float().div(127.5).sub(1)
    return classifier_probabilities(grey[None, None])[0, digit].item()


def _reference(generator_path: Path) -> tuple[dict[str, np.ndarray], list[str], list[float]]:
    """The widget's own PNGs for the states the test visits, its slider labels, and its render times in ms."""
    generator, explorer = _page_explorer(generator_path)
    images = {"seed A": _decode(explorer.image.value)}
    z_a = make_noise(1, generator.z_dim, seed=0)
    render_ms = []
    for index, name in ((0, "PC1"), (-1, "towards 7")):
        slider, direction = explorer.direction_sliders[index], explorer.directions[index]
        started = time.perf_counter()
        slider.value = slider.max
        render_ms.append(1000 * (time.perf_counter() - started))
        images[f"{name} at max"] = _decode(explorer.image.value)
        # The figure's cell for this direction and offset (notebook 05 sweeps candidate 0, which is seed A's z).
        figure_cell = directions.direction_sweeps(generator, z_a, [direction], [slider.max])
        assert torch.equal(explorer.current_images(), figure_cell), f"the slider and the figure disagree on {name}"
        slider.value = 0.0
    explorer.t_slider.value = 1.0
    images["seed B"] = _decode(explorer.image.value)
    towards_7 = explorer.direction_sliders[-1]
    for move in range(MOVES):  # the moves the page gets below: Home and End in turn
        started = time.perf_counter()
        towards_7.value = towards_7.min if move % 2 == 0 else towards_7.max
        render_ms.append(1000 * (time.perf_counter() - started))
    return images, [slider.description for slider in explorer.direction_sliders], render_ms


def _assert_shows(shot: np.ndarray, reference: dict[str, np.ndarray], name: str, what: str) -> None:
    difference = _difference(shot, reference[name])
    assert difference <= SAME_MAX, f"{what}: the rendered image is not {name}'s (difference {difference:.2f})"


def _move_to_end(page, image, label: str, start: np.ndarray, reference, tmp_path: Path, name: str) -> np.ndarray:
    """End on a direction slider: the readout shows the maximum and the page shows that state's image."""
    readout = _press(page, label, "End")
    assert readout == "3.00", f"End on the {label!r} handle shows {readout!r}"
    moved = _wait_for_image(image, lambda shot: _difference(shot, start) > CHANGED_MIN, tmp_path / f"{name}.png")
    assert _difference(moved, start) > CHANGED_MIN, (
        f"moving {label!r} to {readout} left the rendered image as it was (difference {_difference(moved, start):.2f})"
    )
    _assert_shows(moved, reference, f"{name} at max", f"after End on {label!r}")
    return moved


def _latencies_ms(page, label: str) -> list[float]:
    """MOVES slider moves (Home and End in turn, PAUSE_MS apart), each timed from key press to image load."""
    page.evaluate(LISTEN)
    _slider(page, label).locator(".noUi-handle").focus()
    latencies = []
    for move in range(MOVES):
        loaded = page.evaluate("window.dcganTimes.loads.length")
        page.keyboard.press("Home" if move % 2 == 0 else "End")
        page.wait_for_function(f"window.dcganTimes.loads.length > {loaded}")
        latencies.append(page.evaluate(f"window.dcganTimes.loads[{loaded}] - window.dcganTimes.keys.at(-1)"))
        page.wait_for_timeout(PAUSE_MS)
    return latencies


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


def test_latent_sliders_in_browser(page, tmp_path: Path) -> None:
    reference, labels, render_ms = _reference(_generator_path())
    assert labels[0].startswith("PC1 (") and labels[-1] == "towards 7", labels
    for other in ("PC1 at max", "towards 7 at max", "seed B"):
        assert _difference(reference["seed A"], reference[other]) > CHANGED_MIN, f"seed A and {other} look alike"
    image = page.locator("img.dcgan-latent-image")

    start = _wait_for_image(image, lambda shot: True, tmp_path / "0_start.png")
    _assert_shows(start, reference, "seed A", "on load")

    _move_to_end(page, image, labels[0], start, reference, tmp_path, "PC1")
    if os.environ.get("DCGANLIB_WRITE_FIGS") == "1":
        FIGURE.parent.mkdir(exist_ok=True)
        page.locator(".widget-vbox").first.screenshot(path=FIGURE)
    readout = _press(page, labels[0], "ArrowLeft", times=50)
    assert readout == "0.00", f"50 left-arrow presses on {labels[0]!r} show {readout!r}"
    _wait_for_image(image, lambda shot: _difference(shot, start) <= SAME_MAX, tmp_path / "1_PC1_back.png")

    # As the figure says: from seed A, "towards 7" at +3 draws a 7, which seed A's digit is not.
    seven = _move_to_end(page, image, "towards 7", start, reference, tmp_path, "towards 7")
    before, after = _digit_probability(start, 7), _digit_probability(seven, 7)
    assert before < 0.5 < after, f"'towards 7' moved p(7) of the shown image from {before:.2f} to {after:.2f}"

    latencies = _latencies_ms(page, "towards 7")
    timing = {"moves": MOVES, "browser_ms": _percentiles(latencies), "kernel_render_ms": _percentiles(render_ms),
              "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    print(f"slider move -> new image in the page over {MOVES} moves: {timing}")
    (tmp_path / "latency.json").write_text(json.dumps(timing, indent=2))
    if os.environ.get("DCGANLIB_WRITE_FIGS") == "1":
        LATENCY.write_text(json.dumps(timing, indent=2) + "\n")
    readout = _press(page, "towards 7", "ArrowLeft", times=50)
    assert readout == "0.00", f"50 left-arrow presses on 'towards 7' show {readout!r}"

    for key, end, seed in (("End", "1.00", "seed B"), ("Home", "0.00", "seed A")):
        readout = _press(page, "t (A→B)", key)
        assert readout == end, f"{key} on the 't (A→B)' handle shows {readout!r}"
        shot = _wait_for_image(image, lambda shot, seed=seed: _difference(shot, reference[seed]) <= SAME_MAX,
                               tmp_path / f"{2 if seed == 'seed B' else 3}_t_{end}.png")
        _assert_shows(shot, reference, seed, f"at t = {end}")


def test_the_class_picker_of_a_conditional_generator_in_browser(conditional_page, tmp_path: Path) -> None:
    """Notebook 06's picker: choosing a digit redraws the same latent as that digit, which the classifier reads."""
    explorer = latent_sliders(load_generator(SHIPPED_CONDITIONAL_GENERATOR))
    image = conditional_page.locator("img.dcgan-latent-image")
    shown = _wait_for_image(image, lambda shot: True, tmp_path / "class_0.png")
    _assert_shows(shown, {"class 0": _decode(explorer.image.value)}, "class 0", "on load")
    for digit in (7, 3):
        explorer.class_picker.value = digit
        expected = _decode(explorer.image.value)
        conditional_page.locator("select").select_option(label=str(digit))
        shown = _wait_for_image(image, lambda shot, expected=expected: _difference(shot, expected) <= SAME_MAX,
                                tmp_path / f"class_{digit}.png")
        _assert_shows(shown, {f"class {digit}": expected}, f"class {digit}", f"after picking {digit}")
        assert _digit_probability(shown, digit) > 0.5, f"picking {digit} drew no {digit}"


def test_the_rendered_training_notebook_shows_its_figures(docs_site: Path, dog: Watchdog, tmp_path: Path) -> None:
    """Notebook 4's page on the docs site, opened from disk with no kernel and no network: its figures load."""
    require_tools()
    with chromium_tab(tmp_path / "chromium-profile", dog, viewport={"width": 1200, "height": 900}) as tab:
        tab.set_default_timeout(PAGE_LOAD_MS)
        tab.goto((docs_site / "notebooks" / "04_training" / "index.html").as_uri(), wait_until="domcontentloaded")
        assert tab.title().startswith("4 · Training"), tab.title()
        figures = tab.locator(".jp-OutputArea-output img")
        tab.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output img')]"
                              ".every(img => img.complete)")
        sizes = figures.evaluate_all("images => images.map(img => [img.naturalWidth, img.naturalHeight])")
        assert len(sizes) >= 6, f"{len(sizes)} figures on the page"
        assert all(width > 50 and height > 50 for width, height in sizes), sizes
        assert tab.get_by_text("train_step", exact=False).count() > 0


PLAYGROUND_P50_MS = 50  # a redraw of a 28 px digit in the page: the forward pass and the canvas
PLAYGROUND_MOVES = 24


@contextmanager
def site_server(site: Path) -> Iterator[str]:
    """The built site over http on 127.0.0.1: a page opened from a file may not fetch its generators."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _canvas_image(tab) -> np.ndarray:
    """The canvas's red channel as values in [-1, 1] (grey digits: red, green and blue agree)."""
    rgba = np.asarray(tab.evaluate("() => window.dcganPlayground.canvasPixels()"), dtype=np.float64).reshape(28, 28, 4)
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 3] == 255).all()
    return rgba[..., 0] / 127.5 - 1


def test_the_playground_draws_what_torch_draws_and_redraws_fast(docs_site: Path, dog: Watchdog,
                                                                 tmp_path: Path) -> None:
    """The docs site's playground page, served over 127.0.0.1: its forward pass against torch's for the same z, the
    canvas after a slider move and a class pick, and the time of a redraw."""
    require_tools()
    shipped, conditional = load_generator(), load_generator(SHIPPED_CONDITIONAL_GENERATOR)
    with (site_server(docs_site) as url,
          chromium_tab(tmp_path / "chromium-profile", dog, viewport={"width": 1200, "height": 900}) as tab):
        tab.set_default_timeout(PAGE_LOAD_MS)
        tab.goto(f"{url}/docs/playground/")
        tab.evaluate("() => window.dcganPlayground.ready")
        for row in make_noise(3, shipped.z_dim, seed=11).flatten(1):
            drawn = tab.evaluate("([z]) => window.dcganPlayground.pixels('mnist28', z, 0)", [row.tolist()])
            np.testing.assert_allclose(np.reshape(drawn, (1, 28, 28)), generate(shipped, row[None])[0], atol=1e-4)

        before = tab.evaluate("() => window.dcganPlayground.latent()")
        for _ in range(10):
            tab.locator("#pg-direction-0").press("ArrowRight")
        moved = torch.tensor(tab.evaluate("() => window.dcganPlayground.latent()"))
        assert not torch.allclose(moved, torch.tensor(before)), "the PC1 slider did not move the latent"
        np.testing.assert_allclose(_canvas_image(tab), generate(shipped, moved[None])[0, 0], atol=1.5 / 127.5)

        tab.locator("#pg-model").select_option("mnist28-conditional")
        tab.wait_for_function("() => document.querySelectorAll('#pg-class option').length === 10")
        tab.locator("#pg-class").select_option(label="7")
        z = torch.tensor(tab.evaluate("() => window.dcganPlayground.latent()"))
        assert tab.evaluate("() => window.dcganPlayground.label()") == 7
        expected = generate(conditional, z[None], torch.tensor([7]))[0, 0]
        np.testing.assert_allclose(_canvas_image(tab), expected, atol=1.5 / 127.5)

        tab.locator("#pg-model").select_option("mnist28")
        tab.wait_for_function("() => document.querySelector('#pg-direction-1') !== null")
        times = []
        for _ in range(PLAYGROUND_MOVES):
            tab.locator("#pg-direction-1").press("ArrowRight")
            times.append(tab.evaluate("() => window.dcganPlayground.lastRenderMs()"))
    p50 = float(np.median(times))
    print(f"playground redraw: p50 {p50:.1f} ms, p95 {np.percentile(times, 95):.1f} ms over {len(times)} moves")
    assert p50 < PLAYGROUND_P50_MS, f"a redraw takes {p50:.1f} ms at the median (target {PLAYGROUND_P50_MS} ms)"
