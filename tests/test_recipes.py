"""Small-data recipes routed through the Trainer: DiffAugment on every D input, spectral normalisation of D."""

from __future__ import annotations

import pytest
import torch
from kit import assert_same_state, make_trainer, tiny_config

from dcganlib.augment import diff_augment
from dcganlib.config import ArchitectureMismatchError, Config, ConfigError
from dcganlib.train import Trainer


def _trainer(run_dir, **overrides) -> Trainer:
    return make_trainer(run_dir, tiny_config(**{"precision": "fp32", "ema_decay": 0.0, **overrides}))


def _d_inputs(trainer: Trainer, real: torch.Tensor) -> list[torch.Tensor]:
    """What D is shown during one train_step, in call order."""
    seen = []
    hook = trainer.discriminator.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    try:
        trainer.train_step(real)
    finally:
        hook.remove()
    return seen


def _batch(trainer: Trainer) -> torch.Tensor:
    return next(trainer.loader.epoch(0))


def test_diff_augment_reaches_every_d_input_in_both_steps(tmp_path):
    trainer = _trainer(tmp_path, augment="translation,cutout")
    real = _batch(trainer)
    before = trainer.streams.augment.get_state()
    seen = _d_inputs(trainer, real)
    assert len(seen) == 3, "D should see augmented reals and fakes in its step, and augmented fakes in G's"
    replay = torch.Generator(device=real.device).set_state(before)
    torch.testing.assert_close(seen[0], diff_augment(real, ("translation", "cutout"), replay), rtol=0, atol=0)
    for name, shown in (("D's fakes", seen[1]), ("G's fakes", seen[2])):
        # tanh never gives exactly 0: zeros are cutout's square and translation's border.
        assert (shown == 0).float().mean() > 0.1, f"{name} reached D unaugmented"
    assert not torch.equal(trainer.streams.augment.get_state(), before)


def test_without_augment_d_sees_the_batch_itself_and_no_draw_is_made(tmp_path):
    trainer = _trainer(tmp_path)
    real = _batch(trainer)
    before = trainer.streams.augment.get_state()
    seen = _d_inputs(trainer, real)
    assert torch.equal(seen[0], real)
    assert torch.equal(trainer.streams.augment.get_state(), before)


@pytest.mark.parametrize("recipe", [{"augment": "colour,translation,cutout"}, {"spectral_norm": True}])
def test_recipes_resume_exactly(tmp_path, recipe):
    whole = _trainer(tmp_path / "whole", epochs=2, **recipe)
    whole.fit()
    first = _trainer(tmp_path / "split", epochs=1, **recipe)
    first.fit()
    resumed = _trainer(tmp_path / "split", epochs=2, **recipe)
    resumed.fit()
    assert_same_state(whole.state_dict(), resumed.state_dict(),
                      skip=("history.epoch.seconds", "config.epochs"))


def test_spectral_norm_is_part_of_the_architecture(tmp_path):
    trainer = _trainer(tmp_path, epochs=1, spectral_norm=True)
    trainer.fit()
    assert any("parametrizations" in key for key in trainer.state_dict()["discriminator"])
    with pytest.raises(ArchitectureMismatchError, match="spectral_norm"):
        _trainer(tmp_path, epochs=2, spectral_norm=False)


def test_an_unknown_augmentation_names_the_choices():
    with pytest.raises(ConfigError, match="augment: 'flip'.*colour, translation, cutout"):
        Config(augment="translation,flip")
    assert Config(augment=" translation , cutout ").augment_policy == ("translation", "cutout")
    assert Config().augment_policy == ()
