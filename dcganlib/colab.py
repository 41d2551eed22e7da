"""Where runs and data live: Google Drive on Colab (survives a disconnect), `runs/` and `data/` elsewhere. The only
Colab-aware module."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

# Colab's working folder. The variable exists for the runtime simulator in the tests, which puts it in a temp dir.
CONTENT = Path(os.environ.get("DCGANLIB_COLAB_CONTENT", "/content"))
DRIVE_MOUNT_POINT = CONTENT / "drive"
DRIVE_FOLDER = "dcgan"  # runs live in MyDrive/dcgan/<run name>
COLAB_LOCAL_RUNS = CONTENT / "runs"
# TensorBoard rewrites its event files constantly, which Drive syncs badly: on Colab they stay on the VM's disk.
COLAB_TENSORBOARD = CONTENT / "tensorboard"
LOCAL_DATA = Path("data")  # the data root off Colab
# Where a run's files wait on the runtime's disk while Drive is away, mirroring their paths under the mount point.
DRIVE_PENDING = CONTENT / "drive-pending"
REMOUNT_EVERY_S = 300  # a dropped Drive is remounted at most this often (each try may wait for a permission prompt)
REMOUNT_TIMEOUT_S = 60
DRIVE_TRASH_URL = "https://drive.google.com/drive/trash"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class DriveUnavailableError(RuntimeError):
    """Drive could not be mounted; the message says how to fix it or how to train locally on purpose."""


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no `google` namespace package at all
        return False


_is_mount = os.path.ismount  # the tests' stand-in for Colab replaces it, as it cannot mount anything
_last_remount: float | None = None  # when this process last tried to remount Drive


def drive_mounted() -> bool:
    """True while Drive is mounted at its mount point and answers: a live mount, not a folder that merely exists
    (after an unmount) or a mount that dropped out ("Transport endpoint is not connected")."""
    try:
        return _is_mount(DRIVE_MOUNT_POINT) and (DRIVE_MOUNT_POINT / "MyDrive").is_dir()
    except OSError:
        return False


def mount_drive() -> Path:
    """Mount Google Drive (asks for permission once per runtime) and return MyDrive."""
    my_drive = DRIVE_MOUNT_POINT / "MyDrive"
    if not drive_mounted():
        _mount()
    if not drive_mounted():
        raise DriveUnavailableError(f"Drive was mounted but {my_drive} is missing; remount with force_remount=True.")
    return my_drive


def _mount(**options) -> None:
    try:
        from google.colab import drive

        drive.mount(str(DRIVE_MOUNT_POINT), **options)
    except Exception as error:  # the Colab API raises plain exceptions (ValueError, MessageError, timeouts)
        raise DriveUnavailableError(
            f"Google Drive could not be mounted ({error}). Re-run the cell and accept the Drive permission prompt; "
            "a time-out (Drive slow to answer, often when MyDrive's top folder holds many files) usually passes on "
            "a second try. Or call run_directory(name, local=True) to train into /content/runs, which is deleted "
            "when the runtime disconnects."
        ) from error


def reconnect_drive() -> bool:
    """Whether Drive is mounted now, after remounting it when it dropped out: in Colab, at most every
    REMOUNT_EVERY_S seconds, each try given REMOUNT_TIMEOUT_S to answer."""
    global _last_remount
    if drive_mounted():
        return True
    if not in_colab() or (_last_remount is not None and time.monotonic() - _last_remount < REMOUNT_EVERY_S):
        return False
    _last_remount = time.monotonic()
    try:
        _mount(force_remount=True, timeout_ms=REMOUNT_TIMEOUT_S * 1000)
    except DriveUnavailableError:
        return False
    return drive_mounted()


def pending_path(path: str | os.PathLike) -> Path:
    """Where a file for `path` on Drive waits on the runtime's disk while Drive is away."""
    return DRIVE_PENDING / Path(path).absolute().relative_to(DRIVE_MOUNT_POINT.absolute())


def on_drive(path: str | os.PathLike) -> bool:
    """True when `path` lies under Drive's mount point (mounted or not)."""
    return Path(path).absolute().is_relative_to(DRIVE_MOUNT_POINT.absolute())


def ensure_drive(path: str | os.PathLike) -> Path:
    """`path` as a Path, mounting Drive first when it lies on Drive in a fresh Colab runtime."""
    path = Path(path)
    if on_drive(path) and in_colab():
        mount_drive()
    return path


def data_directory(root: str | os.PathLike | None = None) -> Path:
    """Where data sets and their prepared arrays are kept: `root` when given (mounting Drive first when it lies on
    Drive), else MyDrive/dcgan/data on Colab, where they outlive the runtime, else ./data."""
    if root:
        return ensure_drive(Path(root).expanduser())
    if in_colab():
        return mount_drive() / DRIVE_FOLDER / "data"
    return LOCAL_DATA


def flush_drive() -> bool:
    """Push every pending write to Drive and unmount it (Colab only); True if there was a mount to flush.

    Drive uploads lag the runtime: a file saved a moment before a disconnect may never arrive.
    `drive.flush_and_unmount()` is Colab's documented way to wait for the uploads.
    """
    if not (in_colab() and drive_mounted()):
        print("Nothing to flush: Google Drive is not mounted in this runtime.")
        return False
    from google.colab import drive

    drive.flush_and_unmount()
    print("Drive is up to date and unmounted. Mount it again by re-running the run-dir cell (or any cell that "
          "reads the run).")
    return True


def trash_notice(pruned_bytes: int) -> str:
    """What deleting old checkpoints from Drive leaves behind, and how to reclaim it."""
    return (f"Old checkpoints deleted from Drive ({pruned_bytes / 2**20:.0f} MiB just now) go to its Trash, which "
            f"still counts against your quota until it is emptied ({DRIVE_TRASH_URL}; Drive also empties it "
            "after 30 days). Set keep_checkpoints lower to keep fewer on Drive.")


def run_directory(name: str, *, local: bool = False, base=None) -> Path:
    """The run dir for `name`: `base/name` if given, else Drive's MyDrive/dcgan/name on Colab, else runs/name."""
    if not name or Path(name).name != name:
        raise ValueError(f"run name {name!r} must be a plain folder name such as 'mnist28-demo'")
    if base is not None:
        root = ensure_drive(base)
    elif in_colab() and not local:
        root = mount_drive() / DRIVE_FOLDER
    elif in_colab():
        root = COLAB_LOCAL_RUNS
    else:
        root = Path("runs")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    # absolute(), not resolve(): a run on Drive keeps its /content/drive/... path even where MyDrive is a link.
    return path.absolute()


def enable_widget_manager(ipywidgets_version: str) -> bool:
    """On Colab with ipywidgets 8 or later, switch on the custom widget manager; True if it was switched on.

    Colab's built-in manager draws only ipywidgets 7.x (which Colab ships); 8.x widgets need the custom one.
    """
    if not in_colab() or int(ipywidgets_version.split(".")[0]) < 8:
        return False
    from google.colab import output

    output.enable_custom_widget_manager()
    return True


def widget_metadata() -> dict:
    """Display metadata that points Colab's custom widget manager (ipywidgets 8) at its script, as ipywidgets' own
    widgets get it once the manager is on; {} elsewhere, and before the manager is switched on."""
    if not in_colab():
        return {}
    from google.colab import output

    url = getattr(getattr(output, "_widgets", None), "_installed_url", None)
    return {WIDGET_VIEW: {"colab": {"custom_widget_manager": {"url": url}}}} if url else {}
