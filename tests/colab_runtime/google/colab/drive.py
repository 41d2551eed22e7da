"""Google Drive, simulated: MyDrive is a link to a folder (COLAB_SIM_DRIVE) that outlives every runtime."""

import os
import shutil
from pathlib import Path

from google.colab import record


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    """Like Colab's: afterwards `mountpoint`/MyDrive holds the user's Drive."""
    cloud = os.environ.get("COLAB_SIM_DRIVE")
    if not cloud:
        raise ValueError("mount failed: credential propagation was unsuccessful")
    my_drive = Path(mountpoint) / "MyDrive"
    if my_drive.exists() and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
              "call drive.mount(\"/content/drive\", force_remount=True).")
        return
    my_drive.parent.mkdir(parents=True, exist_ok=True)
    if not my_drive.exists():
        my_drive.symlink_to(cloud, target_is_directory=True)
    record(f"mount {mountpoint}")
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    """Like Colab's: pending uploads are pushed (immediate here) and the mount point goes away."""
    mountpoint = Path(os.environ["DCGANLIB_COLAB_CONTENT"]) / "drive"
    if not (mountpoint / "MyDrive").exists():
        raise ValueError("Drive not mounted, so nothing to flush and unmount.")
    (mountpoint / "MyDrive").unlink()
    shutil.rmtree(mountpoint)
    record("flush_and_unmount")
    print("All changes made in this colab session should now be visible in Drive.")
