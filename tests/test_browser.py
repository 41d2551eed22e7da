"""Real-browser test of the latent sliders: Voilà serves a one-widget page, Playwright drives Debian's Chromium.

Needs tools/install_browser.sh (Chromium from apt, Voilà and Playwright from pip); fails, never skips, without them.
DCGANLIB_BROWSER_GENERATOR picks the generator file (default: the shipped one); DCGANLIB_WRITE_FIGS=1 also
writes figs/latent_sliders.png; DCGANLIB_BROWSER_BREAK=1 detaches the page's render callback, which must fail.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcganlib.pretrained import SHIPPED_GENERATOR, load_generator
from dcganlib.sliders import latent_sliders

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).resolve().parent / "browser" / "latent_sliders.ipynb"
FIGURE = ROOT / "figs" / "latent_sliders.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]
INSTALL_HINT = "run tools/install_browser.sh (as root) to install Chromium, Voilà and Playwright"
# Past this the watchdog kills the server and the browser, so a hang fails the test instead of blocking CI.
TEST_TIMEOUT_S = 110
SERVER_START_S = 30
PAGE_LOAD_MS = 60_000  # the kernel imports torch and loads the generator before the widget appears
UPDATE_S = 10  # one slider move is one kernel round trip and a forward pass of milliseconds
# Mean absolute difference of 0-255 RGB values: the same PNG shown again is ~0; a full move of one
# direction slider changes a few units (pixels change a lot, but only where strokes move).
SAME_MAX = 0.25
CHANGED_MIN = 1.0


def _require_tools() -> None:
    """Fail (not skip) with the install hint when the browser, server or driver is missing."""
    missing = [] if CHROMIUM.is_file() else [str(CHROMIUM)]
    for module in ("playwright", "voila"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package {module!r}")
    if missing:
        pytest.fail(f"browser test needs {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)


def _generator_path() -> Path:
    path = Path(os.environ.get("DCGANLIB_BROWSER_GENERATOR") or SHIPPED_GENERATOR)
    if not path.is_file():
        pytest.fail(f"no generator at {path}: set DCGANLIB_BROWSER_GENERATOR to an exported .pt", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids_matching(predicate: Callable[[int, list[str], int], bool]) -> list[int]:
    """Pids of live processes whose (pid, argv, parent pid) satisfy predicate, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # stat is "pid (comm) state ppid ...": split after the last ")" since comm may hold spaces.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z" and predicate(int(entry.name), argv, int(ppid)):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    return bool(_pids_matching(lambda p, _argv, _ppid: p == pid))


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Watchdog:
    """Runs the registered kill functions once the deadline passes; the blocked test then errors out."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._kills: list[Callable[[], None]] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def on_fire(self, kill: Callable[[], None]) -> None:
        self._kills.append(kill)

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        for kill in self._kills:
            kill()


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    """The test's overall time limit (no pytest-timeout needed): kills what the other fixtures registered."""
    dog = Watchdog(TEST_TIMEOUT_S)
    dog.start()
    try:
        yield dog
    finally:
        dog.cancel()
    if dog.fired:
        pytest.fail(f"browser test passed its {TEST_TIMEOUT_S} s limit: the watchdog killed server and browser")


@pytest.fixture
def voila_url(tmp_path: Path, watchdog: Watchdog) -> Iterator[str]:
    """A Voilà server on 127.0.0.1 (random port, token) rendering the page; stopped with its kernel afterwards."""
    _require_tools()
    port, token = _free_port(), secrets.token_hex(16)
    jupyter_home = tmp_path / "jupyter"
    jupyter_home.mkdir()
    env = {
        **os.environ,
        "DCGANLIB_BROWSER_GENERATOR": str(_generator_path()),
        # A private config, runtime and IPython dir: nothing of the user's Jupyter set-up leaks in or is left behind.
        "JUPYTER_CONFIG_DIR": str(jupyter_home / "config"),
        "JUPYTER_RUNTIME_DIR": str(jupyter_home / "runtime"),
        "IPYTHONDIR": str(jupyter_home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    log_path = tmp_path / "voila.log"
    command = [sys.executable, "-m", "voila", str(PAGE), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", f"--token={token}", "--show_tracebacks=True",
               f"--Voila.connection_dir_root={jupyter_home}"]
    with log_path.open("wb") as log:
        # Its own session, so that teardown (or the watchdog) can signal the server's whole process group.
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    kernels: set[int] = set()

    def children() -> list[int]:
        return _pids_matching(lambda _pid, _argv, ppid: ppid == server.pid)

    def kill_all() -> None:
        # Kernels run in sessions of their own (jupyter_client), so they are killed by pid, not with the group.
        kernels.update(children())
        _signal_group(server.pid, signal.SIGKILL)
        _kill(sorted(kernels))

    watchdog.on_fire(kill_all)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"Voilà exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"Voilà not listening after {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/?token={token}"
    finally:
        kernels.update(children())
        # SIGTERM first: jupyter_server then shuts its kernels down cleanly; SIGKILL the group if it lingers.
        _signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        # A kernel also exits by itself once its parent is gone (ipykernel's parent poller): give it the time.
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in kernels) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in kernels if _alive(pid)]
        _kill(left)
    assert not _alive(server.pid), f"Voilà server {server.pid} still running after teardown"
    assert not left, f"kernels {left} of the Voilà server outlived teardown"


@pytest.fixture
def page(tmp_path: Path, voila_url: str, watchdog: Watchdog):
    """A Chromium page (fresh profile) showing the served widget; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"

    def browser_pids() -> list[int]:
        return _pids_matching(lambda _pid, argv, _ppid: any(str(profile) in arg for arg in argv))

    watchdog.on_fire(lambda: _kill(browser_pids()))
    with sync_playwright() as playwright:
        # Playwright adds --headless and --user-data-dir itself; its own browser download does not work here.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 900, "height": 700},
        )
        try:
            tab = context.new_page()
            tab.set_default_timeout(PAGE_LOAD_MS)
            tab.goto(voila_url)
            tab.wait_for_function(
                "() => { const img = document.querySelector('img.dcgan-latent-image');"
                " return img !== null && img.complete && img.naturalWidth > 0; }"
            )
            tab.set_default_timeout(UPDATE_S * 1000)
            yield tab
        finally:
            context.close()
    deadline = time.monotonic() + 10
    while browser_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = browser_pids()
    _kill(left)
    assert not left, f"Chromium processes {left} outlived teardown"


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
