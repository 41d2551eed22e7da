"""GAN losses on discriminator logits (not probabilities: log-sigmoid on logits is numerically stable)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def d_bce_loss(real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """BCE for D: real -> 1 - label_smoothing (one-sided), fake -> 0; the two halves are summed."""
    real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
    return (F.binary_cross_entropy_with_logits(real_logits, real_target)
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_non_saturating_loss(fake_logits: Tensor) -> Tensor:
    """-log D(G(z)): strong gradients while D still rejects the fakes (the default)."""
    return F.softplus(-fake_logits).mean()


def g_minimax_loss(fake_logits: Tensor) -> Tensor:
    """log(1 - D(G(z))): the original game; its gradient vanishes when D wins, i.e. early in training."""
    return -F.softplus(fake_logits).mean()


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss for D: push real logits above 1 and fake logits below -1."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: Tensor) -> Tensor:
    """Hinge (and WGAN) loss for G: raise D's score of the fakes."""
    return -fake_logits.mean()


def d_wasserstein_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """WGAN critic loss: score fakes low and reals high (add gradient_penalty)."""
    return fake_logits.mean() - real_logits.mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP: mean of (||grad critic(x_hat)|| - 1)^2 at random points between real and fake samples."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, generator=generator, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def discriminator_loss(kind: str, real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """D's loss for a config `loss` name (the gradient penalty is added by the trainer)."""
    if kind in ("non-saturating", "minimax"):
        return d_bce_loss(real_logits, fake_logits, label_smoothing)
    if kind == "hinge":
        return d_hinge_loss(real_logits, fake_logits)
    if kind == "wgan-gp":
        return d_wasserstein_loss(real_logits, fake_logits)
    raise ValueError(f"unknown loss {kind!r}")


GENERATOR_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {
    "non-saturating": g_non_saturating_loss,
    "minimax": g_minimax_loss,
    "hinge": g_hinge_loss,
    "wgan-gp": g_hinge_loss,
}


def generator_loss(kind: str, fake_logits: Tensor) -> Tensor:
    """G's loss for a config `loss` name."""
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(GENERATOR_LOSSES)}")
    return GENERATOR_LOSSES[kind](fake_logits)
