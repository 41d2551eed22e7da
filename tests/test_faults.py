"""Real processes killed with SIGKILL mid-epoch and mid-save; the resumed run must equal an uninterrupted one.

Every wait is for an event (a line the child prints once the state to kill in is reached) under a hard deadline
that fires even when the child prints nothing: no sleeps, no reader that only looks at the clock between lines.
"""

import sys
from pathlib import Path

import child_processes
import pytest
from state_compare import assert_same_state

from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.train import Trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

CONFIG = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=16, epochs=3)
DEADLINE = 240  # seconds for a child to reach its event: generous for a loaded CPU, yet a hang cannot last
# A child process has its own Python and NumPy RNGs (the Trainer seeds only torch's); wall time never repeats.
NOT_COMPARED = ("history.epoch.seconds", "rng.python", "rng.numpy")


def start_child(run_dir: Path, pause_at: int = -1, pause_in_epoch: int = 0):
    """Trains in a child process; the save of epoch pause_at hangs after writing its temp file (-1: none), and
    training hangs halfway through epoch pause_in_epoch (0: never)."""
    config_path = CONFIG.save_yaml(run_dir.parent / f"{run_dir.name}.yaml")
    return child_processes.start("train", str(run_dir), str(pause_at), str(config_path),
                                 "--pause-in-epoch", str(pause_in_epoch))


@pytest.fixture(scope="module")
def straight_state(tmp_path_factory) -> dict:
    trainer = Trainer(CONFIG, tmp_path_factory.mktemp("straight"), progress=False, log=lambda message: None)
    trainer.fit()
    return trainer.state_dict()


def assert_resumes_exactly(run_dir: Path, straight_state: dict, expected_epoch: int) -> None:
    resumed = Trainer(CONFIG, run_dir, progress=False, log=lambda message: None)
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
    child = start_child(run_dir, pause_at=2)
    try:
        child.wait_for("SAVING", timeout=DEADLINE)
    finally:
        child.kill()
    folder = checkpoint.checkpoint_dir(run_dir)
    assert not (folder / "ckpt_epoch_0002.pt").exists()
    assert any(p.name.startswith(".ckpt_epoch_0002") for p in folder.iterdir())  # the half-done temp file
    assert_resumes_exactly(run_dir, straight_state, expected_epoch=1)


def test_a_silent_child_fails_the_wait_at_the_deadline():
    child = child_processes.start("silent")
    with pytest.raises(TimeoutError, match="did not print 'EPOCH 1' within 2 s"):
        child.wait_for("EPOCH 1", timeout=2)
    assert child.process.poll() is not None  # killed, not left behind


def test_a_child_that_dies_early_fails_the_wait_at_once(tmp_path):
    child = child_processes.start("train", str(tmp_path / "run"), "-1", str(tmp_path / "missing.yaml"))
    with pytest.raises(RuntimeError, match=r"(?s)exited \(code 1\) before printing 'EPOCH 1'.*missing\.yaml"):
        child.wait_for("EPOCH 1", timeout=DEADLINE)
