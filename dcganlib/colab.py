"""Where runs live: Google Drive on Colab (survives a disconnect), `runs/` elsewhere. The only Colab-aware module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DRIVE_MOUNT_POINT = Path("/content/drive")
DRIVE_FOLDER = "dcgan"  # runs live in MyDrive/dcgan/<run name>
COLAB_LOCAL_RUNS = Path("/content/runs")


class DriveUnavailableError(RuntimeError):
    """Drive could not be mounted; the message says how to fix it or how to train locally on purpose."""


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no `google` namespace package at all
        return False


def mount_drive() -> Path:
    """Mount Google Drive (asks for permission once per runtime) and return MyDrive."""
    my_drive = DRIVE_MOUNT_POINT / "MyDrive"
    if my_drive.is_dir():
        return my_drive
    try:
        from google.colab import drive

        drive.mount(str(DRIVE_MOUNT_POINT))
    except Exception as error:  # the Colab API raises plain exceptions (ValueError, MessageError, timeouts)
        raise DriveUnavailableError(
            f"Google Drive could not be mounted ({error}). Re-run the cell and accept the Drive permission "
            "prompt, or call run_directory(name, local=True) to train into /content/runs, which is deleted "
            "when the runtime disconnects."
        ) from error
    if not my_drive.is_dir():
        raise DriveUnavailableError(f"Drive was mounted but {my_drive} is missing; remount with force_remount=True.")
    return my_drive


def run_directory(name: str, *, local: bool = False, base=None) -> Path:
    """The run dir for `name`: `base/name` if given, else Drive's MyDrive/dcgan/name on Colab, else runs/name."""
    if not name or Path(name).name != name:
        raise ValueError(f"run name {name!r} must be a plain folder name such as 'mnist28-demo'")
    if base is not None:
        root = Path(base)
    elif in_colab() and not local:
        root = mount_drive() / DRIVE_FOLDER
    elif in_colab():
        root = COLAB_LOCAL_RUNS
    else:
        root = Path("runs")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
