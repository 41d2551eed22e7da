"""GAN losses on discriminator logits (not probabilities: log-sigmoid on logits is numerically stable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def class_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """A conditional D's auxiliary classifier against the images' classes: cross-entropy, for D on real and fake
    images, and for G, whose fakes should be seen as the class they were drawn for."""
    return F.cross_entropy(class_logits, labels)


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP: mean of (||grad critic(x_hat)|| - 1)^2 at random points between real and fake samples."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, generator=generator, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@dataclass(frozen=True)
class GanLoss:
    """A GAN loss: D's half (on real and fake logits), G's half (on fake logits), whether D's half takes one-sided
    label smoothing, and whether the gradient penalty (weight Config.gp_weight) joins D's loss."""

    discriminator: Callable[..., Tensor]
    generator: Callable[[Tensor], Tensor]
    takes_label_smoothing: bool = False
    with_gradient_penalty: bool = False

    @property
    def allows_batch_norm_in_d(self) -> bool:
        """BatchNorm mixes the samples of a batch, which the gradient penalty treats one by one."""
        return not self.with_gradient_penalty


# Every loss by its Config name.
LOSSES: dict[str, GanLoss] = {
    "non-saturating": GanLoss(d_bce_loss, g_non_saturating_loss, takes_label_smoothing=True),
    "minimax": GanLoss(d_bce_loss, g_minimax_loss, takes_label_smoothing=True),
    "hinge": GanLoss(d_hinge_loss, g_hinge_loss),
    "wgan-gp": GanLoss(d_wasserstein_loss, g_hinge_loss, with_gradient_penalty=True),
}


def _loss(kind: str) -> GanLoss:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[kind]


def discriminator_loss(kind: str, real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """D's loss for a Config `loss` name; label smoothing applies to the BCE losses only."""
    loss = _loss(kind)
    smoothing = (label_smoothing,) if loss.takes_label_smoothing else ()
    return loss.discriminator(real_logits, fake_logits, *smoothing)


def generator_loss(kind: str, fake_logits: Tensor) -> Tensor:
    """G's loss for a Config `loss` name."""
    return _loss(kind).generator(fake_logits)
