"""Where dcganlib's files live: a run folder's layout (checkpoints, samples, config, plots) and the shipped assets.

    <run_dir>/
        config.yaml                       the run's Config
        checkpoints/ckpt_epoch_0007.pt    resumable state after 7 epochs (..._batch_000123.pt mid-epoch)
        checkpoints/best.pt               the state with the lowest FID so far (fid_every > 0)
        samples/epoch_0007.png            the fixed-noise grid after epoch 7 (frames of the GIF)
        generator.pt                      a small exported generator for sampling and latent walks
        grid.png losses.png d_outputs.png progress.gif    the report
        tensorboard/                      TensorBoard logs (on Colab they stay on the VM instead)
        trainer.lock                      who trains here now: pid and host, refreshed every minute (RunLock)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from . import colab

# Files shipped inside the package (the pretrained generator, the FID classifier), not part of any run.
ASSETS = Path(__file__).resolve().parent / "assets"

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
CHECKPOINT_GLOB = "ckpt_epoch_*.pt"  # never matches temp files, which start with "."
BEST = "best.pt"
SAMPLES = "samples"
FRAME_GLOB = "epoch_*.png"
GENERATOR = "generator.pt"
GRID = "grid.png"
LOSSES = "losses.png"
D_OUTPUTS = "d_outputs.png"
PROGRESS_GIF = "progress.gif"
LOCK = "trainer.lock"
# The lock's mtime is its heartbeat. A lock from another host can only be judged by its age; Google Drive may
# sync a touch minutes late, so stale means many heartbeats missed.
HEARTBEAT_SECONDS = 60.0
STALE_AFTER_SECONDS = 15 * 60.0


def open_run_dir(run_dir: str | os.PathLike) -> Path:
    """`run_dir` as a Path, mounting Google Drive first when it lies on Drive in a fresh Colab runtime."""
    return colab.ensure_drive(run_dir)


def config_path(run_dir: str | os.PathLike) -> Path:
    """The run's config.yaml."""
    return Path(run_dir) / CONFIG


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(run_dir) / CHECKPOINTS


def checkpoint_name(epoch: int, batch_in_epoch: int = 0) -> str:
    """The file name for a checkpoint taken after `epoch` epochs and `batch_in_epoch` more batches."""
    # Fixed widths keep lexicographic order chronological, which latest_checkpoint and pruning rely on.
    if not 0 <= epoch <= 9999 or not 0 <= batch_in_epoch <= 999_999:
        raise ValueError(
            f"need 0 <= epoch <= 9999 and 0 <= batch_in_epoch <= 999999, got {epoch}, {batch_in_epoch}"
        )
    if batch_in_epoch:
        return f"ckpt_epoch_{epoch:04d}_batch_{batch_in_epoch:06d}.pt"
    return f"ckpt_epoch_{epoch:04d}.pt"


def checkpoint_path(run_dir: str | os.PathLike, epoch: int, batch_in_epoch: int = 0) -> Path:
    """The checkpoint file for `epoch` (and `batch_in_epoch` more batches) in the run."""
    return checkpoint_dir(run_dir) / checkpoint_name(epoch, batch_in_epoch)


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's checkpoint files, oldest first (best.pt and temp files excluded)."""
    return sorted(checkpoint_dir(run_dir).glob(CHECKPOINT_GLOB))


def best_path(run_dir: str | os.PathLike) -> Path:
    """The checkpoint with the best FID so far."""
    return checkpoint_dir(run_dir) / BEST


def samples_dir(run_dir: str | os.PathLike) -> Path:
    """The folder of per-epoch sample grids."""
    return Path(run_dir) / SAMPLES


def frame_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """The fixed-noise sample grid written after `epoch`; zero padding keeps sorted frames in order."""
    return samples_dir(run_dir) / f"epoch_{epoch:04d}.png"


def frames(run_dir: str | os.PathLike) -> list[Path]:
    """The run's per-epoch sample grids, oldest first."""
    return sorted(samples_dir(run_dir).glob(FRAME_GLOB))


def generator_path(run_dir: str | os.PathLike) -> Path:
    """The default file for an exported generator."""
    return Path(run_dir) / GENERATOR


def grid_path(run_dir: str | os.PathLike) -> Path:
    """The report's sample grid."""
    return Path(run_dir) / GRID


def losses_path(run_dir: str | os.PathLike) -> Path:
    """The report's loss curves."""
    return Path(run_dir) / LOSSES


def d_outputs_path(run_dir: str | os.PathLike) -> Path:
    """The report's D(x) and D(G(z)) curves."""
    return Path(run_dir) / D_OUTPUTS


def progress_gif_path(run_dir: str | os.PathLike) -> Path:
    """The report's animation of the per-epoch frames."""
    return Path(run_dir) / PROGRESS_GIF


def tensorboard_dir(run_dir: str | os.PathLike) -> Path:
    """Where TensorBoard logs go: run_dir/tensorboard, or the VM's local disk on Colab (Drive syncs them badly)."""
    return colab.tensorboard_dir(run_dir)


def lock_path(run_dir: str | os.PathLike) -> Path:
    """The file naming the process that trains in the run now."""
    return Path(run_dir) / LOCK


class RunDirInUseError(RuntimeError):
    """Another live trainer holds the run dir; the message names its process and host and what to do."""


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` on this host is running (a zombie, killed but not yet reaped, is not)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there: only the heartbeat can tell
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class RunLock:
    """One trainer per run dir: `run_dir/trainer.lock` names the holder's pid and host.

    A lock whose process is gone (same host, pid not running) or whose heartbeat (the file's mtime, refreshed every
    HEARTBEAT_SECONDS while held) is older than STALE_AFTER_SECONDS is taken over with a message. The same process
    may take its own lock again (a notebook cell re-run builds a new Trainer).
    """

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = print):
        self.path = lock_path(run_dir)
        self.log = log
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": uuid.uuid4().hex,
                      "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether the lock file names this lock (and not a later holder)."""
        return (self._read() or {}).get("token") == self.owner["token"]

    def acquire(self) -> RunLock:
        """Take the lock, taking over a stale one; a live holder is a RunDirInUseError. Starts the heartbeat."""
        if not self.held:
            self._take()
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._stop.clear()
            self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
            self._heartbeat.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file, unless another trainer has taken it over since."""
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)  # gone before a later acquire() starts the next one
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a lost race with another trainer taking over the same stale lock: look again
            try:
                with self.path.open("x") as file:  # O_EXCL: exactly one creator wins
                    json.dump(self.owner, file)
                return
            except FileExistsError:
                pass
            holder, age = self._read() or {}, self._age()
            if age is None or (not holder and age < 10):
                time.sleep(0.5)  # deleted, or being written, just now: look again
                continue
            why = self._stale_reason(holder, age)
            if why is None:
                raise RunDirInUseError(self._in_use_message(holder, age))
            with contextlib.suppress(FileNotFoundError):
                # A rename succeeds for one taker only; the loser finds the winner's fresh lock next time round.
                self.path.rename(self.path.with_name(f".{LOCK}.stale-{self.owner['token']}"))
                self.path.with_name(f".{LOCK}.stale-{self.owner['token']}").unlink()
                if holder.get("pid") != self.owner["pid"] or holder.get("host") != self.owner["host"]:
                    self.log(f"Taking over {self.path}: {why}.")
        raise RunDirInUseError(f"could not take {self.path}: other trainers keep taking it; stop them and retry")

    def _stale_reason(self, holder: dict, age: float) -> str | None:
        """Why the lock `holder` may be taken over, or None while its trainer may still be running."""
        if not holder:
            return "it is unreadable"
        same_host = holder.get("host") == self.owner["host"]
        if same_host and holder.get("pid") == self.owner["pid"]:
            return "it is this process's own"
        if same_host and not _pid_alive(int(holder.get("pid", -1))):
            return f"its process {holder.get('pid')} on this host ({holder.get('host')}) is no longer running"
        if age > STALE_AFTER_SECONDS:
            return (f"its trainer (process {holder.get('pid')} on host {holder.get('host')}) has not refreshed it "
                    f"for {age / 60:.0f} minutes")
        return None

    def _in_use_message(self, holder: dict, age: float) -> str:
        run_dir = self.path.parent
        elsewhere = holder.get("host") != self.owner["host"]
        gone = (f"If it is gone (a closed runtime on another machine), the lock is taken over "
                f"{STALE_AFTER_SECONDS / 60:.0f} minutes after its last refresh ({age / 60:.0f} min ago), or delete "
                f"{self.path} now." if elsewhere else f"If that process is not a trainer, delete {self.path}.")
        return (f"run dir {run_dir} is in use by process {holder.get('pid')} on host {holder.get('host')} (training "
                f"since {holder.get('started')}): two trainers would overwrite each other's checkpoints. Wait for it "
                f"to finish or stop it, or train in another run dir. {gone}")

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return None

    def _beat(self) -> None:
        """Refresh the file's mtime while this lock holds it; stop once released or taken over."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if not self.held:
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)
