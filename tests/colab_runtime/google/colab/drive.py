"""Google Drive, simulated: MyDrive is a link to a folder (COLAB_SIM_DRIVE) that outlives every runtime.

In the Colab simulator's runtimes (COLAB_SIM_REAL_MOUNTS set; each runs in a mount namespace of its own) the mount
point is a real mount, a small tmpfs holding that link, so a test can make it drop out under a running trainer
(`umount`) as Drive's FUSE mount does. While the file named by COLAB_SIM_DRIVE_DOWN exists, mounting fails.
"""

import os
import shutil
import subprocess
from pathlib import Path

from google.colab import record


def _down() -> bool:
    flag = os.environ.get("COLAB_SIM_DRIVE_DOWN")
    return bool(flag) and Path(flag).exists()


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    """Like Colab's: afterwards `mountpoint`/MyDrive holds the user's Drive."""
    cloud = os.environ.get("COLAB_SIM_DRIVE")
    if not cloud:
        raise ValueError("mount failed: credential propagation was unsuccessful")
    if _down():
        raise ValueError(f"mount failed: timed out after {timeout_ms} ms (the simulated Drive is down)")
    point = Path(mountpoint)
    my_drive = point / "MyDrive"
    if my_drive.exists() and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
              "call drive.mount(\"/content/drive\", force_remount=True).")
        return
    point.mkdir(parents=True, exist_ok=True)
    if os.environ.get("COLAB_SIM_REAL_MOUNTS"):
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", str(point)], check=True)
        if any(point.iterdir()):
            raise ValueError("mount failed: Mountpoint must not already contain files")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "colab-drive", str(point)], check=True)
    if not my_drive.exists():
        my_drive.symlink_to(cloud, target_is_directory=True)
    record(f"mount {mountpoint}")
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    """Like Colab's: pending uploads are pushed (immediate here) and the mount point goes away."""
    mountpoint = Path(os.environ["DCGANLIB_COLAB_CONTENT"]) / "drive"
    if not (mountpoint / "MyDrive").exists():
        raise ValueError("Drive not mounted, so nothing to flush and unmount.")
    if os.environ.get("COLAB_SIM_REAL_MOUNTS"):
        subprocess.run(["umount", str(mountpoint)], check=True)
        mountpoint.rmdir()
    else:
        (mountpoint / "MyDrive").unlink()
        shutil.rmtree(mountpoint)
    record("flush_and_unmount")
    print("All changes made in this colab session should now be visible in Drive.")
