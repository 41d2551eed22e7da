"""Resume restores the whole state, not just the weights: every key of the checkpoint, compared bit for bit.

Compared: both networks and the EMA generator, both optimisers, the GradScaler, the fixed noise, the noise RNG,
the global Python/NumPy/torch RNGs, `epoch`, `batch_in_epoch`, `step`, `best` and the history.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from kit import assert_same_state, count_tensors, differences, make_trainer, state_keys, tiny_config, train_batches

from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.runs import RunDir
from dcganlib.train import Trainer


def moving_ema_config(**overrides) -> Config:
    """The kit's tiny config with an EMA that moves visibly in a few steps."""
    return tiny_config(**{"ema_decay": 0.9, **overrides})


def seed_everything() -> None:
    """What a notebook's first cell does; the Trainer seeds torch itself but leaves Python's and NumPy's RNGs."""
    random.seed(0)
    np.random.seed(0)


def draw_from_the_global_rngs(trainer: Trainer) -> None:
    """Make every train step use the global RNGs too, as a dropout layer or an augmentation would."""
    step = trainer.train_step

    def train_step(real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        torch.rand(3)
        random.random()
        np.random.rand(2)
        return step(real, labels)

    trainer.train_step = train_step


def test_the_comparison_names_what_differs():
    a = {"rng": {"torch": torch.zeros(4, dtype=torch.uint8), "python": (3, (1, 2), None)}, "best_fid": 1.5,
         "fixed_noise": torch.zeros(2)}
    b = {"rng": {"torch": torch.ones(4, dtype=torch.uint8), "python": (3, (1, 2), None)}, "best_fid": 2.5,
         "fixed_noise": torch.zeros(2, dtype=torch.float64)}
    assert differences(a, b) == ["rng.torch", "best_fid", "fixed_noise"]
    assert differences(a, a) == [] and count_tensors(a) == 2
    with pytest.raises(AssertionError, match="rng.torch, best_fid, fixed_noise"):
        assert_same_state(a, b)


def run_straight_and_split(tmp_path, **overrides) -> tuple[Trainer, dict, Trainer]:
    """A 2-epoch run, and the same run stopped after epoch 1 and resumed in a fresh Trainer."""
    seed_everything()
    straight = make_trainer(tmp_path / "straight", moving_ema_config(epochs=2, **overrides))
    draw_from_the_global_rngs(straight)
    straight.fit()
    expected = straight.state_dict()  # now: the global RNG states are read at this moment

    seed_everything()
    first_half = make_trainer(tmp_path / "split", moving_ema_config(epochs=1, **overrides))
    draw_from_the_global_rngs(first_half)
    first_half.fit()
    random.seed(99)  # whatever ran between the sessions: resume must restore the RNGs, not inherit them
    np.random.seed(99)
    torch.manual_seed(99)
    resumed = make_trainer(tmp_path / "split", moving_ema_config(epochs=2, **overrides))
    draw_from_the_global_rngs(resumed)
    resumed.fit()
    return straight, expected, resumed


def test_resumed_run_ends_in_the_uninterrupted_runs_state(tmp_path):
    straight, expected, resumed = run_straight_and_split(tmp_path)
    assert expected["ema_generator"] is not None
    assert_same_state(expected, resumed.state_dict())
    # The newest checkpoint files agree too, key by key.
    newest = [checkpoint.latest_checkpoint(tmp_path / name) for name in ("straight", "split")]
    assert_same_state(*(checkpoint.load_checkpoint(path) for path in newest))


def test_best_fid_survives_a_resume_at_an_epoch_boundary(tmp_path):
    straight, expected, resumed = run_straight_and_split(tmp_path, eval_every=1, eval_samples=200)
    first_fid = straight.history["epoch"]["fid"][0]
    # The first half's checkpoint holds its best score, and a trainer resuming from it starts with that score.
    after_first_half = RunDir(tmp_path / "again")
    after_first_half.checkpoint_dir.mkdir(parents=True)
    shutil.copy(RunDir(tmp_path / "split").checkpoint(1), after_first_half.checkpoint(1))
    assert checkpoint.load_checkpoint(after_first_half.checkpoint(1))["best"] == {"metric": "fid", "value": first_fid}
    assert Trainer(None, after_first_half.path, progress=False, log=lambda message: None).evaluation.best == first_fid
    assert resumed.evaluation.best == expected["best"]["value"] == min(straight.history["epoch"]["fid"])


def test_loading_a_mid_epoch_checkpoint_restores_every_key(tmp_path):
    config = moving_ema_config(epochs=2)
    interrupted = make_trainer(tmp_path, config)
    interrupted.fit(epochs=1)
    train_batches(interrupted, epoch=1, count=4)
    # Values a fresh Trainer of this config would not make by itself, so that only a restore can bring them back.
    interrupted.evaluation.best = 3.25
    interrupted.fixed_noise = torch.randn_like(interrupted.fixed_noise)
    torch.rand(5)
    random.random()
    np.random.rand(1)
    saved_state = interrupted.state_dict()
    path = interrupted.save_checkpoint()

    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    resumed = make_trainer(tmp_path, config)
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.step) == (1, 4, 14)
    restored = resumed.state_dict()
    assert_same_state(saved_state, restored)
    assert_same_state(state_keys(checkpoint.load_checkpoint(path), restored), restored)
    assert count_tensors(restored) > 30


# A checkpoint of dcganlib 0.2.0 before TrainingState: its config names fid_every and fid_samples, its best score is
# best_fid, and it holds a "data" entry nothing reads (the course net at width 4, one epoch, FID every epoch).
OLD_CHECKPOINT = Path(__file__).resolve().parent / "fixtures" / "checkpoint_v0.2.0.pt"


def test_a_checkpoint_from_before_training_state_resumes(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoint_dir.mkdir(parents=True)
    shutil.copy(OLD_CHECKPOINT, run.checkpoint(1))
    old = checkpoint.load_checkpoint(run.checkpoint(1))
    state = checkpoint.TrainingState.from_dict(old)
    assert state.best == {"metric": "fid", "value": old["best_fid"]} and state.epoch == 1
    trainer = Trainer(None, tmp_path, progress=False, log=lambda message: None)  # the checkpoint's own config
    assert trainer.config.eval_every == 1 and trainer.config.eval_samples == 100
    assert trainer.config.seeding == "offset"  # its streams as it started them
    assert trainer.evaluation.best == old["best_fid"] and trainer.epoch == 1
    trainer.fit(2)
    saved = checkpoint.load_checkpoint(run.checkpoint(2))
    assert saved["history"]["epoch"]["fid"][0] == old["history"]["epoch"]["fid"][0] and len(
        saved["history"]["epoch"]["fid"]) == 2
    assert "best_fid" not in saved and "data" not in saved and saved["config"]["eval_every"] == 1
    assert saved["config"]["seeding"] == "offset"
