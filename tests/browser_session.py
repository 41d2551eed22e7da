"""Process control for the real-browser test: a Voilà server on a free port, a Chromium page, a watchdog.

Each piece is a context manager that leaves nothing running when it exits, and asserts so: the server's process
group and its kernels, the browser's processes. A Watchdog kills what was registered with it once its deadline
passes, so a hang fails the test instead of blocking CI (no pytest-timeout needed).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kit import free_port, poll, wait_until
from repo_root import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]
INSTALL_HINT = "run tools/install_browser.sh (as root) to install Chromium, Voilà and Playwright"
SERVER_START_S = 30
STOP_S = 10  # how long a stopped server, kernel or browser gets to exit before it is killed


def require_tools() -> None:
    """Fail (not skip) with the install hint when the browser, server or driver is missing."""
    missing = [] if CHROMIUM.is_file() else [str(CHROMIUM)]
    for module in ("playwright", "voila"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package {module!r}")
    if missing:
        pytest.fail(f"browser test needs {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)


def pids_matching(predicate: Callable[[int, list[str], int], bool]) -> list[int]:
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


def alive(pid: int) -> bool:
    return bool(pids_matching(lambda p, _argv, _ppid: p == pid))


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def signal_group(pgid: int, sig: signal.Signals) -> None:
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


@contextmanager
def watchdog(seconds: float) -> Iterator[Watchdog]:
    """A test's overall time limit: kills what the other context managers registered, then fails the test."""
    dog = Watchdog(seconds)
    dog.start()
    try:
        yield dog
    finally:
        dog.cancel()
    if dog.fired:
        pytest.fail(f"browser test passed its {seconds} s limit: the watchdog killed server and browser")


def _wait_for_port(server: subprocess.Popen, port: int, log_path: Path) -> None:
    """Returns once the server accepts connections; fails with its log if it exits or SERVER_START_S pass."""

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def exited() -> str | None:
        return None if server.poll() is None else f"Voilà exited with {server.returncode}"

    try:
        wait_until(listening, "Voilà to listen", SERVER_START_S, interval=0.2, gone=exited)
    except AssertionError as error:
        pytest.fail(f"{error}:\n{log_path.read_text()[-3000:]}")


def _start_voila(notebook: Path, jupyter_home: Path, port: int, token: str, log_path: Path,
                 env: dict[str, str]) -> subprocess.Popen:
    """The Voilà process, in a session of its own so that teardown (or the watchdog) can signal its whole group."""
    jupyter_home.mkdir()
    env = {
        **os.environ,
        **env,
        # A private config, runtime and IPython dir: nothing of the user's Jupyter set-up leaks in or is left behind.
        "JUPYTER_CONFIG_DIR": str(jupyter_home / "config"),
        "JUPYTER_RUNTIME_DIR": str(jupyter_home / "runtime"),
        "IPYTHONDIR": str(jupyter_home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    command = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", f"--token={token}", "--show_tracebacks=True",
               f"--Voila.connection_dir_root={jupyter_home}"]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


@contextmanager
def voila_server(notebook: Path, workdir: Path, dog: Watchdog, env: dict[str, str]) -> Iterator[str]:
    """A Voilà server on 127.0.0.1 (random port, token) rendering notebook; its URL. Stopped with its kernels."""
    port, token = free_port(), secrets.token_hex(16)
    log_path = workdir / "voila.log"
    server = _start_voila(notebook, workdir / "jupyter", port, token, log_path, env)
    kernels: set[int] = set()

    def children() -> list[int]:
        return pids_matching(lambda _pid, _argv, ppid: ppid == server.pid)

    def kill_all() -> None:
        # Kernels run in sessions of their own (jupyter_client), so they are killed by pid, not with the group.
        kernels.update(children())
        signal_group(server.pid, signal.SIGKILL)
        kill(sorted(kernels))

    dog.on_fire(kill_all)
    try:
        _wait_for_port(server, port, log_path)
        yield f"http://127.0.0.1:{port}/?token={token}"
    finally:
        kernels.update(children())
        # SIGTERM first: jupyter_server then shuts its kernels down cleanly; SIGKILL the group if it lingers.
        signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            signal_group(server.pid, signal.SIGKILL)
            server.wait(timeout=STOP_S)
        # A kernel also exits by itself once its parent is gone (ipykernel's parent poller): give it the time.
        poll(lambda: not any(alive(pid) for pid in kernels), bool, STOP_S, interval=0.1)
        left = [pid for pid in kernels if alive(pid)]
        kill(left)
    assert not alive(server.pid), f"Voilà server {server.pid} still running after teardown"
    assert not left, f"kernels {left} of the Voilà server outlived teardown"


@contextmanager
def chromium_tab(profile: Path, dog: Watchdog, viewport: dict[str, int]) -> Iterator:
    """A blank Playwright page in headless Chromium with a fresh profile; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    def browser_pids() -> list[int]:
        return pids_matching(lambda _pid, argv, _ppid: any(str(profile) in arg for arg in argv))

    dog.on_fire(lambda: kill(browser_pids()))
    with sync_playwright() as playwright:
        # Playwright adds --headless and --user-data-dir itself; its own browser download does not work here.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport=viewport,
        )
        try:
            yield context.new_page()
        finally:
            context.close()
    poll(lambda: not browser_pids(), bool, STOP_S, interval=0.1)
    left = browser_pids()
    kill(left)
    assert not left, f"Chromium processes {left} outlived teardown"
