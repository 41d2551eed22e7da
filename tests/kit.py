"""The tests' shared kit: a tiny config and trainer, state comparison, waiting with a deadline, a fake Colab, and
processes on a machine of their own. conftest.py turns the pieces that need set-up into fixtures."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from repo_root import ROOT

from dcganlib import colab
from dcganlib.config import Config
from dcganlib.train import Trainer
from tools.child_run import count_tensors, differences

T = TypeVar("T")
COLAB_STAND_IN = Path(__file__).resolve().parent / "colab_runtime"  # google.colab, as tests/colab_sim.py runs it
# A small but real run on mnist-5k: tiny networks and big batches, 10 steps an epoch.
TINY = {"g_features": 8, "d_features": 8, "batch_size": 500, "sample_count": 16}
WALL_TIME = ("history.epoch.seconds",)  # the one thing a resumed run cannot repeat

__all__ = ["COLAB_STAND_IN", "TINY", "FakeColab", "assert_same_state", "count_tensors", "differences", "files_written",
           "free_port", "make_trainer", "on_host", "poll", "state_keys", "tiny_config", "train_batches", "wait_until"]


def tiny_config(**overrides) -> Config:
    """The course net at width 8 on mnist-5k in batches of 500, with `overrides` on top."""
    return Config.from_preset("mnist28", **{**TINY, **overrides})


def make_trainer(run_dir, config: Config | None = None, **kwargs) -> Trainer:
    """A quiet Trainer (no progress bar, no messages unless `log` is given) for `config` (default the tiny one)."""
    return Trainer(config or tiny_config(), run_dir, **{"progress": False, "log": lambda message: None, **kwargs})


def train_batches(trainer: Trainer, *, epoch: int, count: int) -> None:
    """`count` steps of `epoch` as fit() takes them, without the epoch's end: a run cut off mid-epoch."""
    batches = trainer.loader.epoch(epoch, start_batch=trainer.batch_in_epoch)
    for _ in range(count):
        trainer.train_batch(next(batches))


def assert_same_state(a: dict, b: dict, *, skip: tuple[str, ...] = WALL_TIME) -> None:
    """Fail naming every dotted path (e.g. `rng.torch`, `ema_generator.net.0.0.weight`) where a and b differ."""
    found = differences(a, b, skip=skip)
    assert not found, "states differ at: " + ", ".join(found)


def state_keys(state: dict, keys) -> dict:
    """The entries of `state` named by `keys` (a checkpoint file adds version keys a Trainer state lacks)."""
    missing = sorted(set(keys) - state.keys())
    assert not missing, f"state lacks {missing}"
    return {key: state[key] for key in keys}


def files_written(run_dir: Path) -> dict[Path, int]:
    """Every file of a run (its lock aside) with the time it was last written."""
    return {path: path.stat().st_mtime_ns for path in Path(run_dir).rglob("*") if path.name != "trainer.lock"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(probe: Callable[[], T], until: Callable[[T], object], timeout: float, *, interval: float = 0.02) -> T:
    """Call `probe` every `interval` s until `until(result)` holds or `timeout` s pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def wait_until(condition: Callable[[], object], what: str, timeout: float, *, interval: float = 0.02,
               gone: Callable[[], str | None] = lambda: None) -> None:
    """Return once `condition()` holds; fail naming `what` when `timeout` s pass, or at once when `gone()` gives a
    reason to stop waiting (a process that ended, with its output)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if reason := gone():
            raise AssertionError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def notebook_function(notebook: str, tag: str, name: str) -> Callable:
    """The function `name` that a notebook defines in the open, in its one cell tagged `tag`, run on its own."""
    import nbformat

    cells = nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells
    (cell,) = [cell for cell in cells if tag in cell.metadata.get("tags", [])]
    namespace = {}
    exec(compile(cell.source, f"{notebook}'s {tag} cell", "exec"), namespace)
    return namespace[name]


def plain_side(trainer: Trainer):
    """Fresh networks and Adam as the notebooks set them up, with the trainer's initial weights, and a generator of
    the noise that trainer.train_step will draw: (G, D, opt_g, opt_d, noise_rng)."""
    import torch

    from dcganlib.models import build_models
    from dcganlib.seeds import stream_seed

    config = trainer.config
    torch.manual_seed(stream_seed(config.seed, "weights", config.seeding))  # the draw of the trainer's initial weights
    generator, discriminator = build_models(config)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    return generator, discriminator, opt_g, opt_d, torch.Generator().set_state(trainer.streams.noise.get_state())


def assert_same_networks(trainer: Trainer, generator, discriminator) -> None:
    """The trainer's G and D hold exactly these networks' weights and BatchNorm statistics."""
    import torch

    for plain, library in ((generator, trainer.generator), (discriminator, trainer.discriminator)):
        a, b = plain.state_dict(), library.state_dict()
        assert all(torch.equal(a[name], b[name]) for name in a), "weights or BatchNorm statistics differ"


def on_host(host: str, argv: list[str]) -> list[str]:
    """argv run as if on the machine `host`: in a UTS namespace of its own (unshare), with that host name."""
    return ["unshare", "--uts", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]


class FakeColab:
    """This process as a Colab runtime, with the google.colab stand-in that the Colab simulator's kernels use: its
    Drive is a folder (`cloud`) that outlives mounts, /content is a temp folder, every call goes to a log."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.content, self.cloud, self.log = root / "content", root / "drive-cloud", root / "colab-calls.log"
        self.cloud.mkdir(parents=True)
        monkeypatch.syspath_prepend(str(COLAB_STAND_IN))
        for name in [name for name in sys.modules if name.startswith("google.colab")]:
            monkeypatch.delitem(sys.modules, name)
        for name, value in (("COLAB_SIM_DRIVE", self.cloud), ("COLAB_SIM_LOG", self.log),
                            ("DCGANLIB_COLAB_CONTENT", self.content)):
            monkeypatch.setenv(name, str(value))
        for name, value in (("CONTENT", self.content), ("DRIVE_MOUNT_POINT", self.drive),
                            ("COLAB_LOCAL_RUNS", self.content / "runs"),
                            ("COLAB_TENSORBOARD", self.content / "tensorboard"),
                            ("DRIVE_PENDING", self.content / "drive-pending"), ("_last_remount", None),
                            # The stand-in's mount is MyDrive as a link into the cloud folder; a real one is a mount.
                            ("_is_mount", lambda mount_point: (Path(mount_point) / "MyDrive").is_symlink())):
            monkeypatch.setattr(colab, name, value)
        self._monkeypatch = monkeypatch

    @property
    def drive(self) -> Path:
        """Drive's mount point, /content/drive."""
        return self.content / "drive"

    @property
    def my_drive(self) -> Path:
        """MyDrive as the runtime sees it (once mounted)."""
        return self.drive / "MyDrive"

    def calls(self) -> list[str]:
        """What was asked of google.colab, in order ("mount <mount point>", "flush_and_unmount", ...)."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def refuse_mounts(self) -> None:
        """From now on drive.mount fails, as when the user declines Colab's permission prompt."""
        self._monkeypatch.delenv("COLAB_SIM_DRIVE")

    def drop_drive(self) -> None:
        """Drive's mount goes away under the runtime and cannot be mounted again: its mount point is left empty."""
        self.refuse_mounts()
        self.my_drive.unlink()

    def bring_drive_back(self) -> None:
        """Drive can be mounted again (it is not mounted until someone mounts it), at once."""
        self._monkeypatch.setenv("COLAB_SIM_DRIVE", str(self.cloud))
        self._monkeypatch.setattr(colab, "_last_remount", None)

    def files_under_mount_point(self) -> list[Path]:
        """Anything written under /content/drive while Drive was not mounted there (MyDrive's link aside)."""
        if not self.drive.exists():
            return []
        return [path for path in self.drive.rglob("*") if not (path == self.my_drive and path.is_symlink())]

    def close(self) -> None:
        """Forget the stand-in modules, so that later tests run off Colab again (monkeypatch restores the rest)."""
        for name in [name for name in sys.modules if name.startswith("google.colab")]:
            del sys.modules[name]

    def end_runtime(self) -> None:
        """The runtime goes away: /content with its Drive mount point is wiped; Drive keeps its files."""
        shutil.rmtree(self.content)  # MyDrive is a link to the cloud folder: removed, not followed
