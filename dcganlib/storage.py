"""Files written whole, and never under an unmounted Google Drive: the one way dcganlib writes a file.

`write_atomic` runs a writer on a temp file beside the target (named after this machine and process), syncs it and
renames it into place, so the target holds either the old file or the complete new one. On Drive it first makes sure
that Drive is mounted there, remounting it when it dropped out, and creates no folder under a mount point that is
not mounted; a write that fails on a mounted Drive is tried again with back-off for up to DRIVE_RETRY_SECONDS.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

import psutil

from . import colab

T = TypeVar("T")

DRIVE_RETRY_SECONDS = 60.0  # how long a failing write on a mounted Drive is tried again
FIRST_BACKOFF_SECONDS = 1.0  # the wait before the first retry; each later wait doubles
STALE_SECONDS = 3600  # a temp file untouched this long belongs to no live write
TEMP_SUFFIX = ".tmp"


def host_name() -> str:
    """This machine's name: a new Colab runtime, even after a mere disconnect, is a new machine with a new name."""
    return socket.gethostname()


class DriveAwayError(OSError):
    """Google Drive is not mounted and could not be remounted, or kept failing: nothing was written there."""


def temp_path(path: Path) -> Path:
    """The temp file a write to `path` goes through: beside it, named after this machine and process."""
    return path.with_name(f".{path.name}.{host_name()}.{os.getpid()}{TEMP_SUFFIX}")


def check_drive(path: Path) -> None:
    """Raise DriveAwayError when `path` lies on Drive and Drive is not mounted there, even after a remount."""
    if colab.on_drive(path) and not colab.reconnect_drive():
        raise DriveAwayError(errno.ENOTCONN, f"Google Drive is not mounted at {colab.DRIVE_MOUNT_POINT}", str(path))


def ensure_folder(folder: Path) -> Path:
    """Create `folder` and its parents, once Drive is known to be mounted when it lies on Drive."""
    check_drive(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], T]) -> T:
    """Run `write` on a temp file and rename it to `path` once synced; returns what `write` returned.

    On Drive a failed attempt is repeated (so `write` must be repeatable) with back-off for DRIVE_RETRY_SECONDS,
    then a DriveAwayError; an unmounted Drive that cannot be remounted is a DriveAwayError at once. Elsewhere an
    OSError is raised as it is. A failed write leaves no temp file behind and the old `path` unchanged.
    """
    path = Path(path)
    backoff, deadline = FIRST_BACKOFF_SECONDS, time.monotonic() + DRIVE_RETRY_SECONDS
    while True:
        try:
            return _write_once(path, write)
        except DriveAwayError:
            raise
        except OSError as error:
            if not colab.on_drive(path):
                raise
            if time.monotonic() + backoff > deadline:
                raise DriveAwayError(error.errno, f"Google Drive kept failing for {DRIVE_RETRY_SECONDS:.0f} s "
                                                  f"({error.strerror or error})", str(path)) from error
            time.sleep(backoff)
            backoff *= 2


def _write_once(path: Path, write: Callable[[BinaryIO], T]) -> T:
    ensure_folder(path.parent)
    temp = temp_path(path)
    try:
        with temp.open("wb") as file:
            result = write(file)
            file.flush()
            os.fsync(file.fileno())
        temp.replace(path)  # os.replace: atomic, and it overwrites on Windows too
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return result


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy `source` to `target` through write_atomic (retried on Drive); returns `target`."""

    def copy(file: BinaryIO) -> None:
        with source.open("rb") as original:
            shutil.copyfileobj(original, file, 2**20)

    write_atomic(target, copy)
    return target


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut. Windows cannot open folders, and some network or FUSE mounts
    # (Google Drive) refuse to sync one; the file's data is already synced, so this is skipped quietly there.
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_stale_temp_files(folder: Path, gone_hosts: Iterable[str] = ()) -> int:
    """Delete the temp files in `folder` whose writer is gone: a process of this machine that has ended, any
    process of a machine in `gone_hosts`, or a file untouched for STALE_SECONDS. Returns how many went."""
    removed, gone_hosts = 0, [host for host in gone_hosts if host]
    with contextlib.suppress(OSError):  # a folder that does not exist, or a Drive that does not answer
        for temp in folder.glob(f".*{TEMP_SUFFIX}"):
            stem, _, pid = temp.name.removesuffix(TEMP_SUFFIX).rpartition(".")
            ended = (stem.endswith(f".{host_name()}") and pid.isdigit() and not psutil.pid_exists(int(pid)))
            gone = any(stem.endswith(f".{host}") for host in gone_hosts)
            with contextlib.suppress(FileNotFoundError):  # another process removed it meanwhile
                if ended or gone or time.time() - temp.stat().st_mtime > STALE_SECONDS:
                    temp.unlink()
                    removed += 1
    return removed
