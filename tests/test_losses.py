"""Losses against values computed by hand from the formulas."""

import math

import pytest
import torch

from dcganlib.losses import (
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
