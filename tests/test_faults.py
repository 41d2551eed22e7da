"""Real processes killed with SIGKILL mid-epoch and mid-save; the resumed run must equal an uninterrupted one."""

import importlib
import sys
import time
from pathlib import Path

import child_processes
import pytest
import torch

from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.train import Trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(REPO))
Child = importlib.import_module("benchmarks.child_run").Child  # shared with benchmarks/gpu_check.py
CONFIG = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=16, epochs=3)


def start_child(run_dir: Path, pause_at: int) -> Child:
    config_path = CONFIG.save_yaml(run_dir.parent / f"{run_dir.name}.yaml")
    # Trains in a child process; the save of epoch pause_at hangs after writing its temp file (-1: none).
    return Child(child_processes.command("train", str(run_dir), str(pause_at), str(config_path)), cwd=REPO,
                 env=child_processes.environment())


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Trainer:
    trainer = Trainer(CONFIG, tmp_path_factory.mktemp("straight"), progress=False, log=lambda message: None)
    trainer.fit()
    return trainer


def assert_resumes_exactly(run_dir: Path, straight: Trainer, expected_epoch: int) -> None:
    resumed = Trainer(CONFIG, run_dir, progress=False, log=lambda message: None)
    assert resumed.epoch == expected_epoch
    resumed.fit()
    for a, b in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.discriminator.state_dict().values(), resumed.discriminator.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert straight.history["batch"] == resumed.history["batch"]


def test_sigkill_mid_epoch_loses_only_that_epoch(tmp_path, straight):
    run_dir = tmp_path / "run"
    child = start_child(run_dir, pause_at=-1)
    child.wait_for("EPOCH 1", timeout=240)
    time.sleep(0.3)  # well inside epoch 2
    child.kill()
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))["epoch"] == 1
    assert_resumes_exactly(run_dir, straight, expected_epoch=1)


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(tmp_path, straight):
    run_dir = tmp_path / "run"
    child = start_child(run_dir, pause_at=2)
    child.wait_for("SAVING", timeout=240)
    child.kill()
    folder = checkpoint.checkpoint_dir(run_dir)
    assert not (folder / "ckpt_epoch_0002.pt").exists()
    assert any(p.name.startswith(".ckpt_epoch_0002") for p in folder.iterdir())  # the half-done temp file
    assert_resumes_exactly(run_dir, straight, expected_epoch=1)
