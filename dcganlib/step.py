"""The plain DCGAN training step, in fp32: the one notebook 4 runs in the open and `Trainer.train_step` equals."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .losses import d_bce_loss, g_non_saturating_loss


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
