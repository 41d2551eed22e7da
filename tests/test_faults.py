"""Real processes killed with SIGKILL mid-epoch and mid-save; the resumed run must equal an uninterrupted one.

Every wait is for an event (a line the child prints once the state to kill in is reached) under a hard deadline
that fires even when the child prints nothing: no sleeps, no reader that only looks at the clock between lines.
"""

import sys
from pathlib import Path

import child_processes
import pytest
from kit import assert_same_state, files_written, make_trainer, state_keys, tiny_config

from dcganlib import checkpoint
from dcganlib.runs import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")]

CONFIG = tiny_config(epochs=3)
DEADLINE = 240  # seconds for a child to reach its event: generous for a loaded CPU, yet a hang cannot last
# A child process has its own Python and NumPy RNGs (the Trainer seeds only torch's); wall time never repeats.
NOT_COMPARED = ("history.epoch.seconds", "rng.python", "rng.numpy")


def start_child(run_dir: Path, hang_in_save: int = 0, pause_in_epoch: int = 0, host: str | None = None):
    """Trains in a child process (on the machine `host` if given); the save of epoch hang_in_save waits after writing
    its temp file (0: none), and training waits halfway through epoch pause_in_epoch (0: never)."""
    return child_processes.train(CONFIG, run_dir, "--hang-in-save", str(hang_in_save),
                                 "--pause-in-epoch", str(pause_in_epoch), host=host)


@pytest.fixture(scope="module")
def straight_state(tmp_path_factory) -> dict:
    trainer = make_trainer(tmp_path_factory.mktemp("straight"), CONFIG)
    trainer.fit()
    return trainer.state_dict()


def assert_resumes_exactly(run_dir: Path, straight_state: dict, expected_epoch: int) -> None:
    resumed = make_trainer(run_dir, CONFIG)
    assert resumed.epoch == expected_epoch
    resumed.fit()
    assert_same_state(straight_state, resumed.state_dict(), skip=NOT_COMPARED)


def test_sigkill_mid_epoch_loses_only_that_epoch(tmp_path, straight_state):
    run_dir = tmp_path / "run"
    child = start_child(run_dir, pause_in_epoch=2)
    try:
        child.wait_for("EPOCH 1", timeout=DEADLINE)
        child.wait_for("PAUSED", timeout=DEADLINE)  # half of epoch 2 trained, none of it saved
    finally:
        child.kill()
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))["epoch"] == 1
    assert_resumes_exactly(run_dir, straight_state, expected_epoch=1)


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(tmp_path, straight_state):
    run_dir = tmp_path / "run"
    child = start_child(run_dir, hang_in_save=2)
    try:
        child.wait_for("SAVING", timeout=DEADLINE)
    finally:
        child.kill()
    folder = RunDir(run_dir).checkpoint_dir
    assert not (folder / "ckpt_epoch_0002.pt").exists()
    assert any(p.name.startswith(".ckpt_epoch_0002") for p in folder.iterdir())  # the half-done temp file
    assert_resumes_exactly(run_dir, straight_state, expected_epoch=1)


def test_a_silent_child_fails_the_wait_at_the_deadline():
    child = child_processes.start("silent")
    with pytest.raises(TimeoutError, match="did not print 'EPOCH 1' within 2 s"):
        child.wait_for("EPOCH 1", timeout=2)
    assert child.process.poll() is not None  # killed, not left behind


def test_a_child_that_dies_early_fails_the_wait_at_once(tmp_path):
    child = child_processes.child([sys.executable, str(child_processes.ROOT / "tools" / "child_run.py"),
                                   str(tmp_path / "missing.yaml"), str(tmp_path / "run")])
    with pytest.raises(RuntimeError, match=r"(?s)exited \(code 1\) before printing 'EPOCH 1'.*missing\.yaml"):
        child.wait_for("EPOCH 1", timeout=DEADLINE)


# --- the run moves to another machine, as on Colab after a disconnect -------------------------------------
def test_a_run_killed_on_one_machine_resumes_at_once_on_another(tmp_path, straight_state):
    run_dir = tmp_path / "run"
    first = start_child(run_dir, pause_in_epoch=2, host="colab-vm-1")
    try:
        first.wait_for("PAUSED", timeout=DEADLINE)  # its lock is seconds old
    finally:
        first.kill()
    second = start_child(run_dir, host="colab-vm-2")
    second.wait_for("EPOCH 3", timeout=DEADLINE)
    assert second.finish(timeout=DEADLINE) == 0
    took_over = [line for line in second.lines if line.startswith("Took over")]
    assert len(took_over) == 1 and f"from process {first.process.pid} on host colab-vm-1" in took_over[0]
    resumed = [line for line in second.lines if line.startswith("Resumed from epoch 1 (")]
    assert len(resumed) == 1 and second.lines.index(took_over[0]) < second.lines.index(resumed[0])
    final = checkpoint.load_checkpoint(RunDir(run_dir).checkpoint(3))
    assert_same_state(straight_state, state_keys(final, straight_state), skip=NOT_COMPARED)


def test_of_two_live_trainers_the_newer_trains_and_the_older_stops_without_writing(tmp_path, straight_state):
    run_dir = tmp_path / "run"
    older = start_child(run_dir, pause_in_epoch=2, host="colab-vm-1")
    try:
        older.wait_for("PAUSED", timeout=DEADLINE)  # alive, holding the run, half of epoch 2 trained
        newer = start_child(run_dir, host="colab-vm-2")
        newer.wait_for("EPOCH 3", timeout=DEADLINE)
        assert newer.finish(timeout=DEADLINE) == 0
        written = files_written(run_dir)
        older.send("go on")  # the older trainer finishes epoch 2 and comes to its save
        assert older.finish(timeout=DEADLINE) == 3
    finally:
        older.kill()
    assert older.lines[-1].startswith(f"STOPPED {run_dir} was taken over by process {newer.process.pid} on host "
                                      "colab-vm-2")
    assert "EPOCH 2" not in older.lines and files_written(run_dir) == written
    newest = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))
    assert_same_state(straight_state, state_keys(newest, straight_state), skip=NOT_COMPARED)
