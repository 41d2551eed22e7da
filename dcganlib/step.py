"""The plain DCGAN training step in fp32, unconditional and conditional: the steps notebooks 4 and 6 run in the open,
which `Trainer.train_step` equals."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .losses import class_loss, d_bce_loss, g_non_saturating_loss


def plain_train_step(generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer,
                     opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """One D update then one G update on a batch of real images and noise z; returns (loss_d, loss_g)."""
    fake = generator(z)
    # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z))).
    # detach() cuts the fakes off from G: this backward pass stops at them instead of running on through G, whose
    # graph the G update below still needs.
    loss_d = d_bce_loss(discriminator(real), discriminator(fake.detach()))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # (2) Update G network: maximize log(D(G(z))) through the D just updated.
    # Non-saturating: -log D(G(z)) keeps a strong gradient while D still rejects the fakes, where the minimax
    # log(1 - D(G(z))) would fade. D's gradients from this pass are cleared by its next zero_grad, never used.
    loss_g = g_non_saturating_loss(discriminator(fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_d.detach(), loss_g.detach()


def conditional_train_step(generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer,
                           opt_d: torch.optim.Optimizer, real: Tensor, z: Tensor,
                           labels: Tensor) -> tuple[Tensor, Tensor]:
    """The step of a conditional GAN: the fakes are drawn for the real images' labels, and D (a projection D with an
    auxiliary classifier) returns logits and class logits; returns (loss_d, loss_g)."""
    fake = generator(z, labels)
    # (1) D: real towards "real", fakes towards "fake", and the classifier towards every image's class.
    (real_logits, real_classes), (fake_logits, fake_classes) = discriminator(real, labels), discriminator(
        fake.detach(), labels)
    loss_d = d_bce_loss(real_logits, fake_logits) + class_loss(real_classes, labels) + class_loss(fake_classes, labels)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # (2) G: fakes that D takes for real, and for the class they were drawn for.
    fake_logits, fake_classes = discriminator(fake, labels)
    loss_g = g_non_saturating_loss(fake_logits) + class_loss(fake_classes, labels)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_d.detach(), loss_g.detach()
