"""Real-browser test of the latent sliders: Voilà serves a one-widget page, Playwright drives Debian's Chromium.

Needs tools/install_browser.sh (Chromium from apt, Voilà and Playwright from pip); fails, never skips, without them.
DCGANLIB_BROWSER_GENERATOR picks the generator file (default: the shipped one); DCGANLIB_WRITE_FIGS=1 also
writes figs/latent_sliders.png; DCGANLIB_BROWSER_BREAK=1 detaches the page's render callback, which must fail.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_session import Watchdog, chromium_tab, require_tools, voila_server, watchdog
from PIL import Image

from dcganlib.pretrained import SHIPPED_GENERATOR, load_generator
from dcganlib.sliders import latent_sliders

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).resolve().parent / "browser" / "latent_sliders.ipynb"
FIGURE = ROOT / "figs" / "latent_sliders.png"
# Past this the watchdog kills the server and the browser, so a hang fails the test instead of blocking CI.
TEST_TIMEOUT_S = 110
PAGE_LOAD_MS = 60_000  # the kernel imports torch and loads the generator before the widget appears
UPDATE_S = 10  # one slider move is one kernel round trip and a forward pass of milliseconds
# Mean absolute difference of 0-255 RGB values: the same PNG shown again is ~0; a full move of one
# direction slider changes a few units (pixels change a lot, but only where strokes move).
SAME_MAX = 0.25
CHANGED_MIN = 1.0


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


@pytest.fixture
def voila_url(tmp_path: Path, dog: Watchdog) -> Iterator[str]:
    """Voilà serving the one-widget page with the chosen generator; stopped with its kernel afterwards."""
    require_tools()
    with voila_server(PAGE, tmp_path, dog, env={"DCGANLIB_BROWSER_GENERATOR": str(_generator_path())}) as url:
        yield url


@pytest.fixture
def page(tmp_path: Path, voila_url: str, dog: Watchdog):
    """A Chromium page (fresh profile) showing the served widget, its image loaded."""
    with chromium_tab(tmp_path / "chromium-profile", dog, viewport={"width": 900, "height": 700}) as tab:
        tab.set_default_timeout(PAGE_LOAD_MS)
        tab.goto(voila_url)
        tab.wait_for_function(
            "() => { const img = document.querySelector('img.dcgan-latent-image');"
            " return img !== null && img.complete && img.naturalWidth > 0; }"
        )
        tab.set_default_timeout(UPDATE_S * 1000)
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
    deadline = time.monotonic() + UPDATE_S
    while True:
        png = image.screenshot(animations="disabled")
        shot = _decode(png)
        if accept(shot) or time.monotonic() > deadline:
            save_as.write_bytes(png)
            return shot
        time.sleep(0.2)


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


def _reference_images(generator_path: Path) -> dict[str, np.ndarray]:
    """The widget's own PNGs for the states the test visits, made in this process by the same call."""
    explorer = latent_sliders(load_generator(generator_path))
    images = {"seed A": _decode(explorer.image.value)}
    explorer.direction_sliders[0].value = explorer.direction_sliders[0].max
    images["dir 1 at max"] = _decode(explorer.image.value)
    explorer.direction_sliders[0].value = 0.0
    explorer.t_slider.value = 1.0
    images["seed B"] = _decode(explorer.image.value)
    return images


def _assert_shows(shot: np.ndarray, reference: dict[str, np.ndarray], name: str, what: str) -> None:
    difference = _difference(shot, reference[name])
    assert difference <= SAME_MAX, f"{what}: the rendered image is not {name}'s (difference {difference:.2f})"


def test_latent_sliders_in_browser(page, tmp_path: Path) -> None:
    reference = _reference_images(_generator_path())
    for other in ("dir 1 at max", "seed B"):
        assert _difference(reference["seed A"], reference[other]) > CHANGED_MIN, f"seed A and {other} look alike"
    image = page.locator("img.dcgan-latent-image")

    start = _wait_for_image(image, lambda shot: True, tmp_path / "0_start.png")
    _assert_shows(start, reference, "seed A", "on load")

    readout = _press(page, "dir 1", "End")
    assert readout == "3.00", f"End on the 'dir 1' handle shows {readout!r}"
    moved = _wait_for_image(image, lambda shot: _difference(shot, start) > CHANGED_MIN, tmp_path / "1_dir1_max.png")
    assert _difference(moved, start) > CHANGED_MIN, (
        f"moving 'dir 1' to {readout} left the rendered image as it was (difference {_difference(moved, start):.2f})"
    )
    _assert_shows(moved, reference, "dir 1 at max", "after End on 'dir 1'")
    if os.environ.get("DCGANLIB_WRITE_FIGS") == "1":
        FIGURE.parent.mkdir(exist_ok=True)
        page.locator(".widget-vbox").first.screenshot(path=FIGURE)

    readout = _press(page, "dir 1", "ArrowLeft", times=50)
    assert readout == "0.00", f"50 left-arrow presses on 'dir 1' show {readout!r}"
    for key, end, seed in (("End", "1.00", "seed B"), ("Home", "0.00", "seed A")):
        readout = _press(page, "t (A→B)", key)
        assert readout == end, f"{key} on the 't (A→B)' handle shows {readout!r}"
        shot = _wait_for_image(image, lambda shot, seed=seed: _difference(shot, reference[seed]) <= SAME_MAX,
                               tmp_path / f"{2 if seed == 'seed B' else 3}_t_{end}.png")
        _assert_shows(shot, reference, seed, f"at t = {end}")
