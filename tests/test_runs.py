"""Tests for dcganlib.runs: the one description of a run folder's layout that every module asks for paths."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import child_processes
import pytest

from dcganlib import colab, runs
from dcganlib.config import Config
from dcganlib.train import Trainer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(REPO))
Child = importlib.import_module("benchmarks.child_run").Child
TINY = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=16, epochs=1)


def test_the_layout_of_a_run_folder(tmp_path):
    assert runs.config_path(tmp_path) == tmp_path / "config.yaml"
    assert runs.checkpoint_dir(tmp_path) == tmp_path / "checkpoints"
    assert runs.checkpoint_path(tmp_path, 7) == tmp_path / "checkpoints" / "ckpt_epoch_0007.pt"
    assert runs.checkpoint_path(tmp_path, 7, 123) == tmp_path / "checkpoints" / "ckpt_epoch_0007_batch_000123.pt"
    assert runs.best_path(tmp_path) == tmp_path / "checkpoints" / "best.pt"
    assert runs.frame_path(tmp_path, 7) == tmp_path / "samples" / "epoch_0007.png"
    assert runs.generator_path(tmp_path) == tmp_path / "generator.pt"
    report = (runs.grid_path, runs.losses_path, runs.d_outputs_path, runs.progress_gif_path)
    assert [f(tmp_path).name for f in report] == ["grid.png", "losses.png", "d_outputs.png", "progress.gif"]
    assert all(f(str(tmp_path)).parent == tmp_path for f in report)  # str paths work alike


def test_checkpoint_names_sort_chronologically_and_stay_in_range():
    names = [runs.checkpoint_name(7), runs.checkpoint_name(7, 12), runs.checkpoint_name(7, 300),
             runs.checkpoint_name(8), runs.checkpoint_name(9999, 999_999)]
    assert names == sorted(names)
    for epoch, batch in ((10_000, 0), (-1, 0), (1, 1_000_000), (1, -1)):
        with pytest.raises(ValueError, match="0 <= epoch <= 9999"):
            runs.checkpoint_name(epoch, batch)


def test_listings_are_oldest_first_and_skip_other_files(tmp_path):
    for path in (runs.checkpoint_path(tmp_path, 2), runs.checkpoint_path(tmp_path, 1, 5), runs.best_path(tmp_path),
                 runs.checkpoint_dir(tmp_path) / ".ckpt_epoch_0003.pt.tmp-42",
                 runs.frame_path(tmp_path, 10), runs.frame_path(tmp_path, 2), runs.samples_dir(tmp_path) / "x.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert [p.name for p in runs.checkpoints(tmp_path)] == ["ckpt_epoch_0001_batch_000005.pt", "ckpt_epoch_0002.pt"]
    assert [p.name for p in runs.frames(tmp_path)] == ["epoch_0002.png", "epoch_0010.png"]
    assert runs.checkpoints(tmp_path / "empty") == [] and runs.frames(tmp_path / "empty") == []


def test_tensorboard_logs_follow_colab(tmp_path, monkeypatch):
    assert runs.tensorboard_dir(tmp_path / "run") == tmp_path / "run" / "tensorboard"
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "COLAB_TENSORBOARD", tmp_path / "vm_tensorboard")
    assert runs.tensorboard_dir(tmp_path / "run") == tmp_path / "vm_tensorboard" / "run"


def test_open_run_dir_mounts_drive_only_for_a_drive_path_on_colab(tmp_path, monkeypatch):
    mounts = []
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    monkeypatch.setattr(colab, "mount_drive", lambda: mounts.append("mount"))
    assert runs.open_run_dir(str(tmp_path / "local")) == tmp_path / "local"
    assert mounts == []
    assert runs.open_run_dir(tmp_path / "drive" / "MyDrive" / "run") == tmp_path / "drive" / "MyDrive" / "run"
    assert mounts == ["mount"]


def test_shipped_assets_are_inside_the_package():
    assert runs.ASSETS == Path(runs.__file__).resolve().parent / "assets"
    assert {"mnist28_generator.pt", "mnist_classifier.pt"} <= {p.name for p in runs.ASSETS.iterdir()}


# --- one trainer per run dir: trainer.lock -----------------------------------------------------------------
def finished_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(run_dir: Path, pid: int, host: str, age: float = 0.0) -> Path:
    path = runs.lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "token": "theirs", "started": "earlier"}))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_live_trainer_elsewhere_refuses_a_second_one(tmp_path):
    write_lock(tmp_path, 4242, "other-machine", age=60)
    with pytest.raises(runs.RunDirInUseError, match=r"in use by process 4242 on host other-machine.*Wait for it"):
        runs.RunLock(tmp_path).acquire()
    assert json.loads(runs.lock_path(tmp_path).read_text())["token"] == "theirs"  # left alone


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path):
    messages = []
    dead = finished_pid()
    write_lock(tmp_path, dead, socket.gethostname())
    lock = runs.RunLock(tmp_path, log=messages.append).acquire()
    assert lock.held and json.loads(runs.lock_path(tmp_path).read_text())["pid"] == os.getpid()
    assert len(messages) == 1 and f"process {dead} on this host" in messages[0] and "no longer running" in messages[0]
    lock.release()
    assert not runs.lock_path(tmp_path).exists()


def test_a_lock_from_another_host_goes_stale_without_heartbeat(tmp_path):
    messages = []
    write_lock(tmp_path, 4242, "other-machine", age=runs.STALE_AFTER_SECONDS + 60)
    runs.RunLock(tmp_path, log=messages.append).acquire().release()
    assert "has not refreshed it for 16 minutes" in messages[0]


def test_the_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT_SECONDS", 0.01)
    lock = runs.RunLock(tmp_path).acquire()
    os.utime(lock.path, (0, 0))
    deadline = time.monotonic() + 30
    while lock.path.stat().st_mtime < time.time() - 60:
        assert time.monotonic() < deadline, "the heartbeat never touched the lock"
        time.sleep(0.01)
    lock.release()


def test_release_leaves_a_lock_taken_over_since(tmp_path):
    first, second = runs.RunLock(tmp_path).acquire(), runs.RunLock(tmp_path).acquire()  # one process: a re-run cell
    first.release()
    assert second.held
    second.release()
    assert not runs.lock_path(tmp_path).exists()


def tiny_trainer(run_dir: Path, **kwargs) -> Trainer:
    return Trainer(TINY, run_dir, progress=False, **{"log": lambda message: None, **kwargs})


def test_the_lock_is_held_while_training_and_released_after_it_even_on_an_error(tmp_path):
    trainer = tiny_trainer(tmp_path)
    assert json.loads(runs.lock_path(tmp_path).read_text())["pid"] == os.getpid()
    trainer.fit()
    assert not runs.lock_path(tmp_path).exists()

    def broken(real):
        assert runs.lock_path(tmp_path).exists()  # fit() takes the lock again
        raise RuntimeError("boom")

    trainer.train_step = broken
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(2)
    assert not runs.lock_path(tmp_path).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")
def test_a_second_trainer_is_refused_until_the_first_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    config_path = TINY.save_yaml(tmp_path / "tiny.yaml")
    child = Child([sys.executable, str(REPO / "benchmarks" / "child_run.py"), str(config_path), str(run_dir),
                   "--pause-in-epoch", "1"], cwd=REPO, env=child_processes.environment())
    child.wait_for("PAUSED", timeout=240)  # training, holding the lock
    with pytest.raises(runs.RunDirInUseError) as refused:
        tiny_trainer(run_dir)
    assert f"process {child.process.pid} on host {socket.gethostname()}" in str(refused.value)
    child.kill()
    messages = []
    tiny_trainer(run_dir, log=messages.append).fit()  # the re-run takes the dead trainer's lock over
    assert any(f"{child.process.pid} on this host" in m and "no longer running" in m for m in messages), messages
    assert not runs.lock_path(run_dir).exists()
