"""Trainer.train_step against one step worked by hand from dcganlib.losses: each option changes what it names.

Every test takes one batch and the noise the trainer will draw, runs the step the long way on copies of the
trainer's networks (its own Adam, carrying the trainer's moments; fp32; the loss functions called by name), and
compares losses and weights.
"""

from __future__ import annotations

import copy

import kit
import pytest
import torch

from dcganlib import losses
from dcganlib.config import Config
from dcganlib.models import make_noise
from dcganlib.train import Trainer

# The kit's tiny net in fp32, NCHW and batches of 64: a step that arithmetic by hand can follow exactly.
BY_HAND = {"batch_size": 64, "sample_count": 4, "epochs": 1, "precision": "fp32", "channels_last": False}
# Each config loss as (D's loss, G's loss): the functions the step must call, named here and not dispatched.
LOSS_PAIRS = {
    "non-saturating": (losses.d_bce_loss, losses.g_non_saturating_loss),
    "minimax": (losses.d_bce_loss, losses.g_minimax_loss),
    "hinge": (losses.d_hinge_loss, losses.g_hinge_loss),
    "wgan-gp": (losses.d_wasserstein_loss, losses.g_hinge_loss),
}


def by_hand_config(**overrides) -> Config:
    values = {**BY_HAND, "ema_decay": 0.0, **overrides}
    if values.get("loss") == "wgan-gp":
        values["batch_norm"] = False
    return kit.tiny_config(**values)


def make_trainer(run_dir, config: Config) -> Trainer:
    return kit.make_trainer(run_dir, config, resume=False)


def first_batch(trainer: Trainer) -> torch.Tensor:
    return next(iter(trainer.loader.epoch(0)))


def step_by_hand(trainer: Trainer, real: torch.Tensor) -> dict:
    """The step `trainer` is about to take, worked on copies of its networks; returns losses and new weights."""
    cfg = trainer.config
    d_loss_fn, g_loss_fn = LOSS_PAIRS[cfg.loss]
    generator, discriminator = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if trainer.opt_d.state:  # a later step: Adam's moments and step count carry over
        opt_g.load_state_dict(copy.deepcopy(trainer.opt_g.state_dict()))
        opt_d.load_state_dict(copy.deepcopy(trainer.opt_d.state_dict()))
    rng = torch.Generator().set_state(trainer.streams.noise.get_state())
    z = make_noise(real.size(0), cfg.z_dim, generator=rng)
    fake = generator(z)
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    smoothing = {"label_smoothing": cfg.label_smoothing} if d_loss_fn is losses.d_bce_loss else {}
    loss_d = d_loss_fn(real_logits, fake_logits, **smoothing)
    penalty = None
    if cfg.loss == "wgan-gp":  # alpha is drawn from the noise RNG right after z
        penalty = losses.gradient_penalty(discriminator, real, fake, rng)
        loss_d = loss_d + cfg.gp_weight * penalty
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = g_loss_fn(discriminator(fake))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "penalty": penalty,
            "real_logits": real_logits.detach(), "fake_logits": fake_logits.detach(),
            "generator": generator, "discriminator": discriminator}


def assert_same_weights(module: torch.nn.Module, expected: torch.nn.Module) -> None:
    got, want = module.state_dict(), expected.state_dict()
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=name)


@pytest.mark.parametrize("loss", list(LOSS_PAIRS))
def test_each_loss_choice_trains_both_networks_with_its_own_pair(tmp_path, loss):
    trainer = make_trainer(tmp_path, by_hand_config(loss=loss))
    real = first_batch(trainer)
    expected = step_by_hand(trainer, real)
    stats = trainer.train_step(real)
    torch.testing.assert_close(stats[0], expected["loss_d"])
    torch.testing.assert_close(stats[1], expected["loss_g"])
    torch.testing.assert_close(stats[2], torch.sigmoid(expected["real_logits"]).mean())
    assert_same_weights(trainer.discriminator, expected["discriminator"])
    assert_same_weights(trainer.generator, expected["generator"])


def test_the_loss_choices_are_told_apart(tmp_path):
    # On the same batch and weights, minimax and non-saturating share D's loss and differ in G's; hinge differs
    # in both. Guards the by-hand test above against pairs that happen to agree.
    results = {}
    for loss in ("non-saturating", "minimax", "hinge"):
        trainer = make_trainer(tmp_path / loss, by_hand_config(loss=loss))
        results[loss] = trainer.train_step(first_batch(trainer))
    assert results["non-saturating"][0] == results["minimax"][0]
    assert results["non-saturating"][1] != results["minimax"][1]
    assert results["hinge"][0] != results["minimax"][0]


def test_label_smoothing_changes_only_ds_real_targets(tmp_path):
    plain = make_trainer(tmp_path / "plain", by_hand_config())
    smoothed = make_trainer(tmp_path / "smoothed", by_hand_config(label_smoothing=0.2))
    real = first_batch(plain)
    expected = step_by_hand(smoothed, real)
    a, b = plain.train_step(real), smoothed.train_step(real)
    torch.testing.assert_close(b[0], expected["loss_d"])
    # softplus(x) - y x per real logit: lowering the target by 0.2 adds 0.2 * mean(real logits), nothing else.
    torch.testing.assert_close(b[0] - a[0], 0.2 * expected["real_logits"].mean())
    assert torch.equal(a[2:], b[2:])  # D(x) and D(G(z)) were read before the update: unchanged
    assert_same_weights(smoothed.discriminator, expected["discriminator"])


@pytest.mark.parametrize("lr_d", [None, 1e-3])
def test_lr_d_sets_ds_learning_rate_and_only_ds(tmp_path, lr_d):
    trainer = make_trainer(tmp_path, by_hand_config(lr_d=lr_d))
    assert [group["lr"] for group in trainer.opt_g.param_groups] == [2e-4]
    assert [group["lr"] for group in trainer.opt_d.param_groups] == [lr_d or 2e-4]
    before = copy.deepcopy(trainer.discriminator.state_dict())
    real = first_batch(trainer)
    expected = step_by_hand(trainer, real)
    trainer.train_step(real)
    assert_same_weights(trainer.discriminator, expected["discriminator"])
    assert_same_weights(trainer.generator, expected["generator"])
    # Adam's first step moves each weight by about lr: the largest move shows which rate D used.
    weight = next(name for name, _ in trainer.discriminator.named_parameters())
    moved = (trainer.discriminator.state_dict()[weight] - before[weight]).abs().max().item()
    assert moved == pytest.approx(lr_d or 2e-4, rel=0.01)


@pytest.mark.parametrize("gp_weight", [0.0, 10.0, 25.0])
def test_gp_weight_scales_the_gradient_penalty_in_ds_loss(tmp_path, gp_weight):
    trainer = make_trainer(tmp_path, by_hand_config(loss="wgan-gp", gp_weight=gp_weight))
    real = first_batch(trainer)
    expected = step_by_hand(trainer, real)
    assert expected["penalty"].item() > 0.01
    stats = trainer.train_step(real)
    torch.testing.assert_close(stats[0], expected["loss_d"])
    # The Wasserstein part alone, from D's logits before the update, plus gp_weight times the penalty.
    wasserstein = losses.d_wasserstein_loss(expected["real_logits"], expected["fake_logits"])
    torch.testing.assert_close(stats[0], wasserstein + gp_weight * expected["penalty"])
    assert_same_weights(trainer.discriminator, expected["discriminator"])


@pytest.mark.parametrize(("ema_decay", "step", "decay"), [
    (0.999, 0, 0.1),  # warm-up: (1 + step) / (10 + step) caps the decay early on
    (0.999, 5, 6 / 15),
    (0.5, 100, 0.5),  # after the warm-up the configured decay applies
    (0.999, 100_000, 0.999),
])
def test_ema_follows_the_generator_with_the_warmed_up_decay(tmp_path, ema_decay, step, decay):
    trainer = make_trainer(tmp_path, by_hand_config(ema_decay=ema_decay))
    # Give the average a history of its own, so that its old value and G's new one are told apart.
    with torch.no_grad():
        for param in trainer.ema.model.parameters():
            param.add_(0.5)
    ema_before = copy.deepcopy(trainer.ema.model.state_dict())
    trainer.step = step
    trainer.train_step(first_batch(trainer))
    generator, ema = trainer.generator.state_dict(), trainer.ema.model.state_dict()
    params = {name for name, _ in trainer.generator.named_parameters()}
    for name in generator:
        if name in params:
            torch.testing.assert_close(ema[name], decay * ema_before[name] + (1 - decay) * generator[name], msg=name)
        else:  # BatchNorm statistics are copied, not averaged
            assert torch.equal(ema[name], generator[name]), name
    assert trainer.sampling_generator is trainer.ema.model


def test_without_ema_the_generator_itself_samples(tmp_path):
    trainer = make_trainer(tmp_path, by_hand_config(ema_decay=0.0))
    assert trainer.ema is None and trainer.sampling_generator is trainer.generator
    assert trainer.state_dict()["ema_generator"] is None


def test_the_plain_step_is_the_non_saturating_step_by_hand(tmp_path):
    """dcganlib.step.plain_train_step (notebook 4's step) against the same step worked from the loss formulas."""
    from dcganlib.step import plain_train_step

    trainer = make_trainer(tmp_path, by_hand_config())
    real = first_batch(trainer)
    expected = step_by_hand(trainer, real)
    cfg = trainer.config
    generator, discriminator = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    z = make_noise(real.size(0), cfg.z_dim, generator=torch.Generator().set_state(trainer.streams.noise.get_state()))
    loss_d, loss_g = plain_train_step(generator, discriminator, opt_g, opt_d, real, z)
    assert not loss_d.requires_grad and not loss_g.requires_grad
    torch.testing.assert_close(loss_d, expected["loss_d"])
    torch.testing.assert_close(loss_g, expected["loss_g"])
    assert_same_weights(discriminator, expected["discriminator"])
    assert_same_weights(generator, expected["generator"])
