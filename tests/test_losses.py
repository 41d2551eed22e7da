"""Losses against values computed by hand from the formulas."""

import math

import pytest
import torch

from dcganlib.config import LOSSES as LOSS_NAMES
from dcganlib.losses import (
    LOSSES,
    d_bce_loss,
    d_hinge_loss,
    d_wasserstein_loss,
    discriminator_loss,
    g_hinge_loss,
    g_minimax_loss,
    g_non_saturating_loss,
    generator_loss,
    gradient_penalty,
)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_d_bce_by_hand():
    real_part = -(math.log(sigmoid(2.0)) + math.log(sigmoid(-1.0))) / 2
    fake_part = -(math.log(1 - sigmoid(0.5)) + math.log(1 - sigmoid(-3.0))) / 2
    assert d_bce_loss(REAL, FAKE).item() == pytest.approx(real_part + fake_part, rel=1e-6)


def test_one_sided_label_smoothing_changes_only_real_targets():
    t = 0.9
    real_part = -sum(t * math.log(sigmoid(x)) + (1 - t) * math.log(1 - sigmoid(x)) for x in (2.0, -1.0)) / 2
    fake_part = -(math.log(1 - sigmoid(0.5)) + math.log(1 - sigmoid(-3.0))) / 2
    assert d_bce_loss(REAL, FAKE, label_smoothing=0.1).item() == pytest.approx(real_part + fake_part, rel=1e-6)


def test_generator_losses_by_hand():
    assert g_non_saturating_loss(FAKE).item() == pytest.approx(
        -(math.log(sigmoid(0.5)) + math.log(sigmoid(-3.0))) / 2, rel=1e-6)
    assert g_minimax_loss(FAKE).item() == pytest.approx(
        (math.log(1 - sigmoid(0.5)) + math.log(1 - sigmoid(-3.0))) / 2, rel=1e-6)


def test_non_saturating_gradient_is_strong_where_minimax_vanishes():
    logit = torch.tensor([-6.0], requires_grad=True)  # D confidently rejects the fake: D(G(z)) ~ 0.0025
    (grad_ns,) = torch.autograd.grad(g_non_saturating_loss(logit), logit)
    (grad_mm,) = torch.autograd.grad(g_minimax_loss(logit), logit)
    assert abs(grad_ns.item()) == pytest.approx(1 - sigmoid(-6.0), rel=1e-5)
    assert abs(grad_mm.item()) == pytest.approx(sigmoid(-6.0), rel=1e-5)
    assert abs(grad_ns.item()) > 100 * abs(grad_mm.item())


def test_bce_with_logits_is_stable_where_sigmoid_bce_is_not():
    logit = torch.tensor([-200.0])
    assert math.isfinite(g_non_saturating_loss(logit).item())
    assert g_non_saturating_loss(logit).item() == pytest.approx(200.0)
    assert torch.nn.functional.binary_cross_entropy(torch.sigmoid(logit), torch.ones(1)).item() == 100.0  # clamped


def test_hinge_and_wasserstein_by_hand():
    assert d_hinge_loss(REAL, FAKE).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert g_hinge_loss(FAKE).item() == pytest.approx(1.25)
    assert d_wasserstein_loss(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)


def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = w . x has gradient w everywhere, so the penalty is (||w|| - 1)^2 exactly.
    w = torch.tensor([3.0, 4.0, 0.0, 0.0]).view(1, 4, 1, 1)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(5, 4, 1, 1), torch.randn(5, 4, 1, 1)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5.0 - 1) ** 2)


def test_gradient_penalty_is_differentiable_for_the_critic():
    layer = torch.nn.Conv2d(1, 1, 2)

    def critic(x):
        return layer(x).flatten(1).sum(1)

    penalty = gradient_penalty(critic, torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4))
    penalty.backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_dispatch_by_name():
    assert discriminator_loss("non-saturating", REAL, FAKE) == d_bce_loss(REAL, FAKE)
    assert discriminator_loss("hinge", REAL, FAKE) == d_hinge_loss(REAL, FAKE)
    assert discriminator_loss("wgan-gp", REAL, FAKE) == d_wasserstein_loss(REAL, FAKE)
    assert generator_loss("minimax", FAKE) == g_minimax_loss(FAKE)
    with pytest.raises(ValueError, match="unknown loss"):
        generator_loss("nope", FAKE)
    with pytest.raises(ValueError, match="unknown loss"):
        discriminator_loss("nope", REAL, FAKE)


def test_gradient_penalty_mixes_real_and_fake_with_seeded_weights():
    # critic(x) = ||x||^2 / 2 has gradient x, so the penalty is the mean of (||x_hat|| - 1)^2 at the mixed points:
    # it depends on where between real and fake each x_hat lies. The same seeded draw gives alpha by hand.
    def critic(x):
        return (x**2).flatten(1).sum(1) / 2

    real = torch.full((4, 2, 3, 3), 1.0)  # ||real|| = sqrt(18) per sample
    fake = torch.zeros(4, 2, 3, 3) + torch.arange(4.0).view(4, 1, 1, 1) * -0.5
    alpha = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    mixed = alpha * real + (1 - alpha) * fake
    expected = ((mixed.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(7))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # The penalty at the real points alone, or at the fake points alone, is a different number.
    for endpoint in (real, fake):
        assert abs(((endpoint.flatten(1).norm(dim=1) - 1) ** 2).mean().item() - got.item()) > 0.1


def test_gradient_penalty_draws_one_weight_per_sample_from_the_given_generator():
    def critic(x):
        return (x**2).flatten(1).sum(1) / 2

    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    first = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(3))
    assert torch.equal(first, gradient_penalty(critic, real, fake, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, gradient_penalty(critic, real, fake, torch.Generator().manual_seed(4)))
    # Per-sample penalties: with a 2-sample batch whose second sample is real == fake, that sample's x_hat is
    # known whatever its weight, so the first sample's weight is the only unknown.
    real2 = torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.25)])
    fake2 = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.25)])
    alpha = torch.rand(2, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    by_hand = ((2 * alpha[0, 0, 0, 0] - 1) ** 2 + (0.5 - 1) ** 2) / 2  # ||alpha * ones(4)|| = 2 alpha
    assert gradient_penalty(critic, real2, fake2, torch.Generator().manual_seed(5)).item() == pytest.approx(
        by_hand.item(), rel=1e-6)


def test_gradient_penalty_keeps_the_dtype_and_never_reaches_the_generator():
    def critic(x):
        return (x**2).flatten(1).sum(1)

    real = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    fake = torch.randn(3, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.dtype == torch.float64
    penalty.backward()
    assert fake.grad is None  # the fakes are detached: the critic's penalty must not train G


def test_label_smoothing_shifts_the_bce_by_the_mean_real_logit():
    # BCE with target y on logit x is softplus(x) - y x, so lowering the real target by s adds s * mean(x_real).
    assert (d_bce_loss(REAL, FAKE, 0.2) - d_bce_loss(REAL, FAKE)).item() == pytest.approx(0.2 * REAL.mean().item())
    assert discriminator_loss("minimax", REAL, FAKE, 0.2) == d_bce_loss(REAL, FAKE, 0.2)
    assert discriminator_loss("non-saturating", REAL, FAKE, 0.2) == d_bce_loss(REAL, FAKE, 0.2)


def test_every_loss_name_routes_to_its_generator_loss():
    assert generator_loss("non-saturating", FAKE) == g_non_saturating_loss(FAKE)
    assert generator_loss("minimax", FAKE) == g_minimax_loss(FAKE)
    assert generator_loss("hinge", FAKE) == g_hinge_loss(FAKE)
    assert generator_loss("wgan-gp", FAKE) == g_hinge_loss(FAKE)
    assert discriminator_loss("minimax", REAL, FAKE) == d_bce_loss(REAL, FAKE)
    with pytest.raises(ValueError, match="unknown loss 'nope'; choose one of non-saturating, minimax, hinge, wgan-gp"):
        generator_loss("nope", FAKE)
    with pytest.raises(ValueError, match="unknown loss 'nope'; choose one of non-saturating, minimax, hinge, wgan-gp"):
        discriminator_loss("nope", REAL, FAKE)


def test_config_takes_its_loss_names_from_the_loss_table():
    assert LOSS_NAMES == tuple(LOSSES)


def test_label_smoothing_reaches_the_bce_losses_only():
    smoothed = discriminator_loss("non-saturating", REAL, FAKE, label_smoothing=0.1)
    assert smoothed == d_bce_loss(REAL, FAKE, 0.1) and smoothed != d_bce_loss(REAL, FAKE)
    assert discriminator_loss("minimax", REAL, FAKE, label_smoothing=0.1) == smoothed


def test_gradient_penalty_draws_its_weights_in_the_samples_dtype():
    # A float64 batch gets float64 weights: the same seeded draw by hand, to float64 precision.
    def critic(x):
        return (x**2).flatten(1).sum(1) / 2

    real = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    fake = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    alpha = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    mixed = alpha * real + (1 - alpha) * fake
    expected = ((mixed.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(11))
    assert got.item() == pytest.approx(expected.item(), rel=1e-13)
