"""Tests for dcganlib.runs: a run folder's layout, and the lock that lets one trainer at a time write it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import child_processes
import psutil
import pytest
from kit import files_written, make_trainer, tiny_config

from dcganlib import colab, runs, storage
from dcganlib.config import Config
from dcganlib.runs import RunDir


def test_the_layout_of_a_run_folder(tmp_path):
    run = RunDir(str(tmp_path))  # a str path works alike
    assert run.path == tmp_path and Path(run) == tmp_path  # a RunDir is a path-like object
    assert run.config == tmp_path / "config.yaml"
    assert run.checkpoint_dir == tmp_path / "checkpoints"
    assert run.checkpoint(7) == tmp_path / "checkpoints" / "ckpt_epoch_0007.pt"
    assert run.checkpoint(7, 123) == tmp_path / "checkpoints" / "ckpt_epoch_0007_batch_000123.pt"
    assert run.best == tmp_path / "checkpoints" / "best.pt"
    assert run.frame(7) == tmp_path / "samples" / "epoch_0007.png"
    assert run.generator == tmp_path / "generator.pt"
    assert run.lock_file == tmp_path / "trainer.lock"
    report = (run.grid, run.losses, run.d_outputs, run.progress_gif)
    assert [path.name for path in report] == ["grid.png", "losses.png", "d_outputs.png", "progress.gif"]
    assert all(path.parent == tmp_path for path in report)


def test_the_run_writes_its_config(tmp_path):
    config = Config.from_preset("demo")
    assert RunDir(tmp_path).write_config(config) == tmp_path / "config.yaml"
    assert Config.load_yaml(tmp_path / "config.yaml") == config


def test_checkpoint_names_sort_chronologically_and_stay_in_range():
    names = [runs.checkpoint_name(7), runs.checkpoint_name(7, 12), runs.checkpoint_name(7, 300),
             runs.checkpoint_name(8), runs.checkpoint_name(9999, 999_999)]
    assert names == sorted(names)
    for epoch, batch in ((10_000, 0), (-1, 0), (1, 1_000_000), (1, -1)):
        with pytest.raises(ValueError, match="0 <= epoch <= 9999"):
            runs.checkpoint_name(epoch, batch)


def test_listings_are_oldest_first_and_skip_other_files(tmp_path):
    for path in (RunDir(tmp_path).checkpoint(2), RunDir(tmp_path).checkpoint(1, 5), RunDir(tmp_path).best,
                 storage.temp_path(RunDir(tmp_path).checkpoint(3)),
                 RunDir(tmp_path).frame(10), RunDir(tmp_path).frame(2), RunDir(tmp_path).samples_dir / "x.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["ckpt_epoch_0001_batch_000005.pt", "ckpt_epoch_0002.pt"]
    assert [p.name for p in RunDir(tmp_path).frames()] == ["epoch_0002.png", "epoch_0010.png"]
    assert RunDir(tmp_path / "empty").checkpoints() == [] and RunDir(tmp_path / "empty").frames() == []


def test_tensorboard_logs_follow_colab(tmp_path, monkeypatch):
    assert RunDir(tmp_path / "run").tensorboard == tmp_path / "run" / "tensorboard"
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "COLAB_TENSORBOARD", tmp_path / "vm_tensorboard")
    assert RunDir(tmp_path / "run").tensorboard == tmp_path / "vm_tensorboard" / "run"


def test_open_run_dir_mounts_drive_only_for_a_drive_path_on_colab(tmp_path, monkeypatch):
    mounts = []
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    monkeypatch.setattr(colab, "mount_drive", lambda: mounts.append("mount"))
    assert RunDir.open(str(tmp_path / "local")).path == tmp_path / "local"
    assert mounts == []
    assert RunDir.open(tmp_path / "drive" / "MyDrive" / "run").path == tmp_path / "drive" / "MyDrive" / "run"
    assert mounts == ["mount"]


def test_shipped_assets_are_inside_the_package():
    assert runs.ASSETS == Path(runs.__file__).resolve().parent / "assets"
    assert {"mnist28_generator.pt", "mnist_classifier.pt"} <= {p.name for p in runs.ASSETS.iterdir()}


# --- one writing trainer per run dir: trainer.lock ---------------------------------------------------------
def finished_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_process():
    """A running process of this machine (it waits on stdin), ended after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield process
    process.kill()
    process.wait()


def write_lock(run_dir: Path, pid: int, host: str, process_started: float | None = None) -> Path:
    """A lock file as another trainer (token "theirs") would leave it."""
    path = RunDir(run_dir).lock_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "process_started": process_started, "token": "theirs",
                                "since": "earlier"}))
    return path


def holder(run_dir: Path) -> dict:
    return json.loads(RunDir(run_dir).lock_file.read_text())


def test_a_live_trainer_on_this_machine_refuses_a_second_one(tmp_path, live_process):
    write_lock(tmp_path, live_process.pid, runs.host_name(), psutil.Process(live_process.pid).create_time())
    with pytest.raises(runs.RunDirInUseError, match=rf"in use by process {live_process.pid} on this machine.*Wait"):
        runs.RunLock(tmp_path).acquire()
    assert holder(tmp_path)["token"] == "theirs"  # left alone


@pytest.mark.parametrize("why", ["ended", "pid reused"])
def test_a_lock_whose_process_has_ended_is_taken_over(tmp_path, live_process, why):
    """Ended: its pid runs nothing. Reused: its pid now runs another process, which started at another time."""
    pid, started = (finished_pid(), None) if why == "ended" else (live_process.pid, 1.0)
    write_lock(tmp_path, pid, runs.host_name(), started)
    messages = []
    lock = runs.RunLock(tmp_path, log=messages.append).acquire()
    assert lock.held and holder(tmp_path)["pid"] == os.getpid()
    assert messages == [f"Took over {tmp_path} from process {pid}, which is no longer running."]
    lock.release()
    assert holder(tmp_path)["released"] and not lock.held


def test_a_lock_from_another_machine_is_taken_over_at_once_and_its_trainer_stops(tmp_path, monkeypatch):
    """As after a Colab disconnect: the new runtime is another host, however fresh the old lock looks."""
    monkeypatch.setattr(runs, "host_name", lambda: "colab-vm-1")
    old = runs.RunLock(tmp_path).acquire()
    old.ensure_held()
    monkeypatch.setattr(runs, "host_name", lambda: "colab-vm-2")
    messages = []
    new = runs.RunLock(tmp_path, log=messages.append).acquire()
    assert new.held and not old.held and holder(tmp_path)["host"] == "colab-vm-2"
    assert len(messages) == 1 and messages[0].startswith(f"Took over {tmp_path} from process {os.getpid()} on host "
                                                         "colab-vm-1 (training since ")
    assert "if that trainer still runs, it stops before its next save" in messages[0]
    with pytest.raises(runs.RunTakenOverError, match=r"taken over by process \d+ on host colab-vm-2 .*stops without"):
        old.ensure_held()
    with pytest.raises(runs.RunTakenOverError):  # and stays stopped: a new Trainer resumes instead
        old.acquire()
    old.release()
    assert new.held


def test_a_cell_run_again_takes_its_own_process_lock_quietly(tmp_path):
    messages = []
    first = runs.RunLock(tmp_path, log=messages.append).acquire()
    second = runs.RunLock(tmp_path, log=messages.append).acquire()
    assert messages == [] and second.held
    first.release()  # the first Trainer, garbage-collected, leaves the second's lock alone
    assert second.held and not holder(tmp_path)["released"]
    second.release()
    assert holder(tmp_path)["released"]


def test_a_released_lock_is_free_and_still_fences_the_trainer_taken_over_before(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "host_name", lambda: "colab-vm-1")
    old = runs.RunLock(tmp_path).acquire()
    monkeypatch.setattr(runs, "host_name", lambda: "colab-vm-2")
    new = runs.RunLock(tmp_path, log=lambda message: None).acquire()
    new.release()  # the newer trainer has finished
    with pytest.raises(runs.RunTakenOverError, match="colab-vm-2"):
        old.ensure_held()
    messages = []
    assert runs.RunLock(tmp_path, log=messages.append).acquire().held and messages == []  # taken without a word


def test_an_unreadable_lock_is_waited_for_then_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "UNREADABLE_RETRIES", 2)
    RunDir(tmp_path).lock_file.write_text('{"host": "colab-vm-1", "pi')  # a writer killed mid-write
    messages = []
    assert runs.RunLock(tmp_path, log=messages.append).acquire().held
    assert messages == [f"Took over {tmp_path} whose lock file is unreadable."]


def test_acquiring_again_while_held_keeps_the_lock(tmp_path):
    lock = runs.RunLock(tmp_path).acquire()
    token = holder(tmp_path)["token"]
    assert lock.acquire().held and holder(tmp_path)["token"] == token


def test_the_lock_is_held_while_training_and_released_after_it_even_on_an_error(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1))
    assert holder(tmp_path)["pid"] == os.getpid() and not holder(tmp_path)["released"]
    trainer.fit()
    assert holder(tmp_path)["released"]

    def broken(real, labels=None):
        assert not holder(tmp_path)["released"]  # fit() takes the lock again
        raise RuntimeError("boom")

    trainer.train_step = broken
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(2)
    assert holder(tmp_path)["released"]


def take_over_from_another_machine(run_dir: Path, monkeypatch) -> runs.RunLock:
    with monkeypatch.context() as patch:
        patch.setattr(runs, "host_name", lambda: "colab-vm-9")
        return runs.RunLock(run_dir, log=lambda message: None).acquire()


def test_a_trainer_taken_over_mid_epoch_stops_before_its_next_write(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, tiny_config(epochs=3))
    written = {}

    def after_epoch(trainer):
        if trainer.epoch == 1:
            take_over_from_another_machine(tmp_path, monkeypatch)
            written.update(files_written(tmp_path))

    with pytest.raises(runs.RunTakenOverError, match=r"taken over by process \d+ on host colab-vm-9"):
        trainer.fit(on_epoch_end=after_epoch)
    assert trainer.epoch == 2  # epoch 2 was trained, and its samples and checkpoint never written
    assert files_written(tmp_path) == written and not RunDir(tmp_path).frame(2).exists()
    assert holder(tmp_path)["host"] == "colab-vm-9"  # fit's end left the newer trainer's lock alone
    with pytest.raises(runs.RunTakenOverError):  # nor does a later fit take the run back
        trainer.fit()
    assert files_written(tmp_path) == written


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")
def test_a_second_trainer_is_refused_until_the_first_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    child = child_processes.train(tiny_config(epochs=1), run_dir, "--pause-in-epoch", "1")
    child.wait_for("PAUSED", timeout=240)  # training, holding the lock
    with pytest.raises(runs.RunDirInUseError, match=f"in use by process {child.process.pid} on this machine"):
        make_trainer(run_dir, tiny_config(epochs=1))
    child.kill()
    messages = []
    # The re-run takes the dead trainer's lock over.
    make_trainer(run_dir, tiny_config(epochs=1), log=messages.append).fit()
    assert messages[0] == f"Took over {run_dir} from process {child.process.pid}, which is no longer running."
    assert holder(run_dir)["released"]
