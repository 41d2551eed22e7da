"""A run folder: its layout (checkpoints, samples, config, plots), its TensorBoard location and its lock.

    <run_dir>/
        config.yaml                       the run's Config
        checkpoints/ckpt_epoch_0007.pt    resumable state after 7 epochs (..._batch_000123.pt mid-epoch)
        checkpoints/best.pt               the state with the lowest FID so far (fid_every > 0)
        samples/epoch_0007.png            the fixed-noise grid after epoch 7 (frames of the GIF)
        generator.pt                      a small exported generator for sampling and latent walks
        grid.png losses.png d_outputs.png progress.gif    the report
        tensorboard/                      TensorBoard logs (on Colab they stay on the VM instead)
        trainer.lock                      the trainer that may write here (RunLock), or the last one, released
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from . import colab

# Files shipped inside the package (the pretrained generator, the FID classifier), not part of any run.
ASSETS = Path(__file__).resolve().parent / "assets"

CHECKPOINT_GLOB = "ckpt_epoch_*.pt"  # never matches temp files, which start with "."
FRAME_GLOB = "epoch_*.png"
LOCK = "trainer.lock"
UNREADABLE_RETRIES = 20  # tenths of a second to wait for a lock file that another trainer is writing


def checkpoint_name(epoch: int, batch_in_epoch: int = 0) -> str:
    """The file name for a checkpoint taken after `epoch` epochs and `batch_in_epoch` more batches."""
    # Fixed widths keep lexicographic order chronological, which the listings and pruning rely on.
    if not 0 <= epoch <= 9999 or not 0 <= batch_in_epoch <= 999_999:
        raise ValueError(
            f"need 0 <= epoch <= 9999 and 0 <= batch_in_epoch <= 999999, got {epoch}, {batch_in_epoch}"
        )
    if batch_in_epoch:
        return f"ckpt_epoch_{epoch:04d}_batch_{batch_in_epoch:06d}.pt"
    return f"ckpt_epoch_{epoch:04d}.pt"


class RunDir(os.PathLike):
    """One run folder: where each of its files lives. `RunDir(path)` touches nothing; `RunDir.open` mounts Drive."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """The run folder at `path`, mounting Google Drive first when it lies on Drive in a fresh Colab runtime."""
        return cls(colab.ensure_drive(path))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config(self) -> Path:
        """The run's config.yaml."""
        return self.path / "config.yaml"

    @property
    def checkpoint_dir(self) -> Path:
        """The folder holding the run's checkpoints."""
        return self.path / "checkpoints"

    def checkpoint(self, epoch: int, batch_in_epoch: int = 0) -> Path:
        """The checkpoint file for `epoch` (and `batch_in_epoch` more batches)."""
        return self.checkpoint_dir / checkpoint_name(epoch, batch_in_epoch)

    def checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first (best.pt and temp files excluded)."""
        return sorted(self.checkpoint_dir.glob(CHECKPOINT_GLOB))

    @property
    def best(self) -> Path:
        """The checkpoint with the best FID so far."""
        return self.checkpoint_dir / "best.pt"

    @property
    def samples_dir(self) -> Path:
        """The folder of per-epoch sample grids."""
        return self.path / "samples"

    def frame(self, epoch: int) -> Path:
        """The fixed-noise sample grid written after `epoch`; zero padding keeps sorted frames in order."""
        return self.samples_dir / f"epoch_{epoch:04d}.png"

    def frames(self) -> list[Path]:
        """The per-epoch sample grids, oldest first."""
        return sorted(self.samples_dir.glob(FRAME_GLOB))

    @property
    def generator(self) -> Path:
        """The default file for an exported generator."""
        return self.path / "generator.pt"

    @property
    def grid(self) -> Path:
        """The report's sample grid."""
        return self.path / "grid.png"

    @property
    def losses(self) -> Path:
        """The report's loss curves."""
        return self.path / "losses.png"

    @property
    def d_outputs(self) -> Path:
        """The report's D(x) and D(G(z)) curves."""
        return self.path / "d_outputs.png"

    @property
    def progress_gif(self) -> Path:
        """The report's animation of the per-epoch frames."""
        return self.path / "progress.gif"

    @property
    def tensorboard(self) -> Path:
        """Where TensorBoard logs go: tensorboard/ here, or the VM's local disk on Colab (Drive syncs them badly)."""
        return colab.COLAB_TENSORBOARD / self.path.name if colab.in_colab() else self.path / "tensorboard"

    @property
    def lock_file(self) -> Path:
        """The file naming the trainer that may write here now."""
        return self.path / LOCK

    def write_config(self, config) -> Path:
        """Save `config` (a Config) as the run's config.yaml."""
        with self.writing():
            return config.save_yaml(self.config)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an OSError inside the block into a RunDirUnwritableError naming the run dir."""
        try:
            yield
        except OSError as error:
            raise RunDirUnwritableError(f"cannot write to the run dir {self.path} ({error}); choose a writable "
                                        "folder (on Colab, check that Drive is mounted)") from error


class RunDirUnwritableError(RuntimeError):
    """The run dir cannot be written (a file in its way, no permission, Drive not mounted)."""


class RunDirInUseError(RuntimeError):
    """A live trainer on this machine holds the run dir; the message names its process and what to do."""


class RunTakenOverError(RuntimeError):
    """A newer trainer took the run dir over; this one stops before writing anything more."""


def host_name() -> str:
    """This machine's name: a new Colab runtime, even after a mere disconnect, is a new machine with a new name."""
    return socket.gethostname()


def _process_started(pid: int) -> float | None:
    """When process `pid` on this machine started (seconds since the epoch; 0.0 if hidden from us), or None if it is
    not running."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, ValueError):  # ValueError: not a pid at all
        return None
    except psutil.AccessDenied:  # another user's process: running, but its start time is not ours to read
        return 0.0


class RunLock:
    """One writing trainer per run dir: `trainer.lock` names it (host, pid, when it started, a random token).

    Taking the lock: a released lock is free; a lock from another machine is taken over at once, since on Colab it
    belongs to a runtime that a disconnect replaced; a lock on this machine is taken over once its process has
    ended (a crash, a kill, a closed kernel), or when it is this process's own (a re-run notebook cell); a running
    trainer on this machine keeps its lock, and a second one is a RunDirInUseError. Nothing depends on clocks or
    on how fast Drive syncs. The token is a fence: a trainer that was taken over finds another token in the file
    when `ensure_held` looks, before each of its writes, and stops.
    """

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = print):
        self.run = RunDir(run_dir)
        self.path = self.run.lock_file
        self.log = log
        self.owner = {"host": host_name(), "pid": os.getpid(), "process_started": _process_started(os.getpid()),
                      "token": uuid.uuid4().hex, "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        self._holding = False  # between a successful acquire() and release()
        self._lost: str | None = None  # what to say once another trainer has taken the run over

    @property
    def held(self) -> bool:
        """Whether the lock file names this lock, not released (and not a later holder)."""
        holder = self._read() or {}
        return holder.get("token") == self.owner["token"] and not holder.get("released")

    def acquire(self) -> RunLock:
        """Take the lock (taking over a gone or remote holder, with a message); a live local holder refuses.

        Called again while held, it only checks that the lock is still this one's; once taken over, it never
        takes the lock back (build a new Trainer, which resumes from the newest checkpoint).
        """
        if self._holding or self._lost:
            self.ensure_held()
            return self
        with self.run.writing():
            self._take()
        self._holding = True
        return self

    def _take(self) -> None:
        """Write this lock into the file: created, or over a holder that may be taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = self._read()
        for _ in range(UNREADABLE_RETRIES):  # an unreadable lock is being written by another trainer just now
            if holder is not None or self._create():
                break
            time.sleep(0.1)
            holder = self._read()
        if holder is None and not self.held:
            self._write_over()
            self.log(f"Took over {self.run.path} whose lock file is unreadable.")
        elif holder is not None and not self.held:  # another trainer's lock, or a released one
            why = self._take_over_reason(holder)
            if why is None:
                raise RunDirInUseError(self._in_use_message(holder))
            self._write_over()
            if why:
                self.log(f"Took over {self.run.path} {why}.")

    def ensure_held(self) -> None:
        """Raise RunTakenOverError if another trainer has taken the run dir over since this one took it."""
        if self._lost is None:
            holder = self._read()
            if holder is None or holder.get("token") == self.owner["token"]:
                return
            self._lost = (
                f"{self.run.path} was taken over by process {holder.get('pid')} on host {holder.get('host')} (since "
                f"{holder.get('since')}): this trainer stops without writing, and the run goes on there. To train "
                "here again, build a new Trainer (re-run the load cell): it resumes from the newest checkpoint")
        raise RunTakenOverError(self._lost)

    def release(self) -> None:
        """Mark the lock free for the next trainer, unless another trainer has taken it over since.

        The file stays, naming this lock as released: a trainer that was taken over earlier still finds another
        token in it, and stops, even after the newer trainer has finished.
        """
        self._holding = False
        if self.held:
            self._write_over(released=True)

    def _take_over_reason(self, holder: dict) -> str | None:
        """Why `holder`'s lock may be taken over ("" when nothing needs saying), or None while it trains here."""
        if holder.get("released"):
            return ""
        if holder.get("host") != self.owner["host"]:
            return (f"from process {holder.get('pid')} on host {holder.get('host')} (training since "
                    f"{holder.get('since')}): this is another machine, as after a Colab disconnect; if that trainer "
                    "still runs, it stops before its next save")
        if holder.get("pid") == self.owner["pid"]:
            return ""  # this process's own: a notebook cell that builds a new Trainer again
        started, recorded = _process_started(int(holder.get("pid", -1))), holder.get("process_started")
        reused = bool(started and recorded) and abs(started - recorded) > 1  # its pid now names another process
        if started is None or reused:
            return f"from process {holder.get('pid')}, which is no longer running"
        return None

    def _in_use_message(self, holder: dict) -> str:
        return (f"run dir {self.run.path} is in use by process {holder.get('pid')} on this machine (training since "
                f"{holder.get('since')}): two trainers would overwrite each other's checkpoints. Wait for it to "
                "finish or stop it, or train in another run dir")

    def _create(self) -> bool:
        """Create the lock file if there is none (exactly one creator wins); whether this lock created it."""
        try:
            with self.path.open("x") as file:
                json.dump({**self.owner, "released": False}, file)
        except FileExistsError:
            return False
        return True

    def _write_over(self, released: bool = False) -> None:
        """Replace the lock file with this lock's in one rename, so that no reader sees half a file."""
        temporary = self.path.with_name(f".{LOCK}.{self.owner['token']}")
        temporary.write_text(json.dumps({**self.owner, "released": released}))
        temporary.replace(self.path)

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None
