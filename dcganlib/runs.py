"""A run folder: its layout (checkpoints, samples, config, plots), its TensorBoard location and its lock.

    <run_dir>/
        config.yaml                       the run's Config
        checkpoints/ckpt_epoch_0007.pt    resumable state after 7 epochs (..._batch_000123.pt mid-epoch)
        checkpoints/best.pt               the state with the best best_metric so far (eval_every > 0)
        samples/epoch_0007.png            the fixed-noise grid after epoch 7 (frames of the GIF)
        generator.pt                      a small exported generator for sampling and latent walks
        grid.png losses.png d_outputs.png progress.gif    the report
        tensorboard/                      TensorBoard logs (on Colab they stay on the VM instead)
        trainer.lock                      the trainer that may write here (RunLock), or the last one, released

A run on Google Drive writes nothing while Drive is away: its files wait in `pending` on the runtime's disk
(colab.DRIVE_PENDING), with a note naming the trainer that wrote them, and move onto Drive once it is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import psutil

from . import colab, storage
from .storage import host_name

# Files shipped inside the package (the pretrained generator, the FID classifier), not part of any run.
ASSETS = Path(__file__).resolve().parent / "assets"

CHECKPOINT_GLOB = "ckpt_epoch_*.pt"  # never matches temp files, which start with "."
FRAME_GLOB = "epoch_*.png"
LOCK = "trainer.lock"
PENDING_NOTE = "pending.json"  # in a run's pending folder: the lock token of the trainer whose files wait there
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
    """One run folder: where each of its files lives, and the one way they are written (`write`).

    `RunDir(path)` touches nothing; `RunDir.open` mounts Drive. `writer` is the lock token of the trainer writing
    here (set by RunLock), which files written while Drive is away are kept under.
    """

    def __init__(self, path: str | os.PathLike, log: Callable[[str], None] = print):
        self.path = Path(path)
        self.log = log
        self.writer: str | None = None
        self.pending = colab.pending_path(self.path) if colab.on_drive(self.path) else None

    @classmethod
    def of(cls, run: str | os.PathLike) -> RunDir:
        """`run` itself when it is a RunDir (keeping its writer), else the RunDir at that path."""
        return run if isinstance(run, RunDir) else cls(run)

    @classmethod
    def open(cls, run: str | os.PathLike) -> RunDir:
        """The run folder `run`, mounting Google Drive first when it lies on Drive in a fresh Colab runtime (a RunDir
        given is already open: it is returned as it is)."""
        if isinstance(run, RunDir):
            return run
        return cls(colab.ensure_drive(run))

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
        """The checkpoint files, oldest first, those waiting for Drive included (best.pt and temp files excluded)."""
        return self._listed(self.checkpoint_dir, CHECKPOINT_GLOB)

    @property
    def best(self) -> Path:
        """The checkpoint with the best `best_metric` so far."""
        return self.checkpoint_dir / "best.pt"

    @property
    def samples_dir(self) -> Path:
        """The folder of per-epoch sample grids."""
        return self.path / "samples"

    def frame(self, epoch: int) -> Path:
        """The fixed-noise sample grid written after `epoch`; zero padding keeps sorted frames in order."""
        return self.samples_dir / f"epoch_{epoch:04d}.png"

    def frames(self) -> list[Path]:
        """The per-epoch sample grids, oldest first, those waiting for Drive included."""
        return self._listed(self.samples_dir, FRAME_GLOB)

    def _listed(self, folder: Path, pattern: str) -> list[Path]:
        """The files matching `pattern` in `folder` and in its pending copy (which wins), sorted by name."""
        found = {path.name: path for path in _glob(folder, pattern)}
        if self.pending is not None:
            found |= {path.name: path for path in _glob(self._waiting(folder), pattern)}
        return [found[name] for name in sorted(found)]

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
            return self.write(self.config, config.write_yaml)

    # --- writing, and Drive going away ------------------------------------------------------------------------
    def write(self, path: Path, write: Callable[[BinaryIO], object]) -> Path:
        """Write one of the run's files whole (storage.write_atomic); returns where it went.

        On Drive, while Drive is away (not mounted and not remountable, or failing for storage.DRIVE_RETRY_SECONDS),
        the file goes to the pending folder on the runtime's disk instead, said once; files waiting there move onto
        Drive at a later write once Drive is back. Off Drive, an OSError is raised as it is.
        """
        if self.pending is None:
            storage.write_atomic(path, write)
            return path
        if self.waiting() and colab.reconnect_drive():
            self.move_pending()
        if not self.waiting():
            try:
                storage.write_atomic(path, write)
                return path
            except storage.DriveAwayError as error:
                return self._write_waiting(path, write, away=error)
        return self._write_waiting(path, write)

    def _write_waiting(self, path: Path, write: Callable[[BinaryIO], object], away: OSError | None = None) -> Path:
        """Write `path`'s file into the pending folder, starting it (its note, and one line) when Drive is `away`."""
        try:
            if away is not None:
                self._start_waiting(away)
            storage.write_atomic(self._waiting(path), write)
        except OSError as error:
            raise RunDirUnwritableError(
                f"Google Drive is away and this runtime's disk cannot take {path.name} either "
                f"({error.strerror or error}): the run stops here, its newest checkpoint kept; free space on the "
                "runtime's disk, then run it again") from error
        return self._waiting(path)

    def waiting(self) -> bool:
        """Whether files of this run wait on the runtime's disk for Drive."""
        return self.pending is not None and (self.pending / PENDING_NOTE).exists()

    def pending_owner(self) -> str | None:
        """The lock token of the trainer whose files wait for Drive, if any do."""
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.pending / PENDING_NOTE).read_text()).get("writer")
        return None

    def located(self, path: Path) -> Path:
        """Where the run's file `path` (given on Drive or in the pending folder) is now: pending, or on Drive."""
        if self.pending is None:
            return path
        on_drive = self.path / path.relative_to(self.pending) if path.is_relative_to(self.pending) else path
        return self._waiting(on_drive) if self._waiting(on_drive).exists() else on_drive

    def _waiting(self, path: Path) -> Path:
        return self.pending / path.relative_to(self.path)

    def _start_waiting(self, error: OSError) -> None:
        note = json.dumps({"writer": self.writer, "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode()
        storage.write_atomic(self.pending / PENDING_NOTE, lambda file: file.write(note))
        self.log(f"{error.strerror or error}: the run goes on with its files in {self.pending} on this runtime's "
                 "disk, and moves them onto Drive once Drive is back (or at the next run in this runtime). They are "
                 "lost if the runtime ends before that.")

    def move_pending(self) -> bool:
        """Move the files waiting on the runtime's disk onto Drive, oldest first; whether all of them went."""
        files = sorted((path for path in self.pending.rglob("*") if path.is_file() and path.name != PENDING_NOTE
                        and not path.name.endswith(storage.TEMP_SUFFIX)), key=lambda path: path.stat().st_mtime)
        try:
            for path in files:
                storage.copy_atomic(path, self.path / path.relative_to(self.pending))
                path.unlink()
        except storage.DriveAwayError:
            return False
        shutil.rmtree(self.pending, ignore_errors=True)
        self.log(f"Google Drive is back: moved {len(files)} files written while it was away onto {self.path}.")
        return True

    def set_pending_aside(self, why: str) -> Path:
        """Rename the pending folder, whose files must not reach Drive (`why`), and say where they are kept."""
        aside = self.pending.with_name(f"{self.pending.name}.not-moved-{time.strftime('%Y%m%d-%H%M%S')}")
        self.pending.rename(aside)
        self.log(f"Files this runtime wrote while Drive was away are kept in {aside} and not moved onto Drive: {why}.")
        return aside

    def remove_stale_temp_files(self, gone_hosts: tuple[str, ...] = ()) -> None:
        """Delete the temp files of writers that are gone (storage.remove_stale_temp_files) from the run's folders."""
        folders = [self.path, self.checkpoint_dir, self.samples_dir]
        for folder in folders + ([self._waiting(folder) for folder in folders] if self.pending else []):
            storage.remove_stale_temp_files(folder, gone_hosts)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an OSError inside the block into a RunDirUnwritableError naming the run dir."""
        try:
            yield
        except OSError as error:
            raise RunDirUnwritableError(f"cannot write to the run dir {self.path} ({error.strerror or error}); "
                                        "choose a writable folder (on Colab, check that Drive is mounted)") from error


def _glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return list(folder.glob(pattern))
    except OSError:  # a Drive that dropped out does not answer
        return []


class RunDirUnwritableError(RuntimeError):
    """The run dir cannot be written (a file in its way, no permission, Drive not mounted)."""


class RunDirInUseError(RuntimeError):
    """A live trainer on this machine holds the run dir; the message names its process and what to do."""


class RunTakenOverError(RuntimeError):
    """A newer trainer took the run dir over; this one stops before writing anything more."""


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
        self.run = RunDir.of(run_dir)
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
        self.run.writer = self.owner["token"]
        return self

    def _take(self) -> None:
        """Write this lock into the file: created, or over a holder that may be taken over."""
        storage.ensure_folder(self.path.parent)
        holder = self._read()
        for _ in range(UNREADABLE_RETRIES):  # an unreadable lock is being written by another trainer just now
            if holder is not None or self._create():
                break
            time.sleep(0.1)
            holder = self._read()
        if holder is None and not self.held:
            self._settle_pending(holder)
            self._write_over()
            self.log(f"Took over {self.run.path} whose lock file is unreadable.")
        elif holder is not None and not self.held:  # another trainer's lock, or a released one
            why = self._take_over_reason(holder)
            if why is None:
                raise RunDirInUseError(self._in_use_message(holder))
            self._settle_pending(holder)
            self._write_over()
            if why:
                self.log(f"Took over {self.run.path} {why}.")
        else:
            self._settle_pending({"token": self.owner["token"]})
        other_host = (holder or {}).get("host")
        self.run.remove_stale_temp_files(gone_hosts=(other_host,) if other_host != self.owner["host"] else ())

    def _settle_pending(self, holder: dict | None) -> None:
        """Files this runtime wrote while Drive was away move onto Drive when the trainer that wrote them still
        holds the run there; otherwise the run went on without them, and they are set aside."""
        if not self.run.waiting():
            return
        owner = self.run.pending_owner()
        if holder is not None and owner is not None and holder.get("token") == owner:
            if not self.run.move_pending():
                raise storage.DriveAwayError(f"Google Drive failed while files were moved onto {self.run.path}")
        else:
            self.run.set_pending_aside("the run on Drive went on from another trainer since, and its history is "
                                       "the one kept")

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
        with contextlib.suppress(OSError):  # Drive away: the next trainer takes over an unreleased lock just as well
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
        text = json.dumps({**self.owner, "released": released}).encode()
        storage.write_atomic(self.path, lambda file: file.write(text))

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None
