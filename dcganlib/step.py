"""The DCGAN training step: the plain steps in fp32, unconditional and conditional, that notebooks 4 and 6 run in
the open, and the Trainer's step (`TrainingStep`), the same arithmetic with what a run adds, which equals them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import distributed
from .augment import diff_augment
from .config import Config
from .ema import AveragedGenerator
from .losses import (
    LOSSES,
    class_loss,
    d_bce_loss,
    discriminator_loss,
    g_non_saturating_loss,
    generator_loss,
    gradient_penalty,
)
from .models import adversarial_logits, make_noise
from .seeds import TrainingStreams


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


@dataclass
class TrainingStep:
    """The Trainer's step: `plain_train_step`'s two updates with what a run adds to them. The loss the config names
    (with its gradient penalty where the loss carries one), mixed precision with a GradScaler, DiffAugment of every
    image D sees, a conditional D's classifier, the EMA generator, and under torchrun each process's share of one
    batch's noise. With none of these it computes exactly `plain_train_step` (tests/test_train.py)."""

    config: Config
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    forwards: tuple[Callable, Callable, Callable]  # G, D, and D for G's update (build.training_forwards)
    streams: TrainingStreams
    ema: AveragedGenerator | None
    group: distributed.Group
    amp_dtype: torch.dtype | None

    def __call__(self, real: Tensor, labels: Tensor | None, step: int) -> Tensor:
        """Step number `step`: one D update then one G update (for a conditional run, the fakes drawn with the real
        images' labels); returns (loss_d, loss_g, D(x), D(G(z))) on the device."""
        cfg, g_forward, _, d_forward_for_g = self.config, *self.forwards
        # Every process draws the whole batch's noise and takes its rows: the same z as in one process.
        z = distributed.share_of(make_noise(real.size(0) * self.group.world_size, cfg.z_dim, device=real.device,
                                            generator=self.streams.noise), self.group)
        # (1) Update D: maximise log D(x) + log(1 - D(G(z))). detach() stops this loss from reaching G.
        with self._autocast(real):
            fake = g_forward(z, *_given(labels))
            loss_d, real_logits, fake_logits = self._discriminator_loss(real, fake.detach(), labels)
        if LOSSES[cfg.loss].with_gradient_penalty:
            critic = functools.partial(self._critic, labels=labels)
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(critic, real, fake.float(), self.streams.noise)
        self._update(self.opt_d, loss_d)
        # (2) Update G: maximise log D(G(z)) (non-saturating), through the freshly updated D. D's own weight
        # gradients would be thrown away before its next step, so they are not computed.
        self.discriminator.requires_grad_(False)
        with self._autocast(real):
            scores = d_forward_for_g(self._augment(fake), *_given(labels))
            loss_g = generator_loss(cfg.loss, adversarial_logits(scores).float()) + _class_loss(scores, labels)
        self._update(self.opt_g, loss_g, before_step=lambda: self.discriminator.requires_grad_(True))
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.generator, step)
        return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(real_logits.detach().float()).mean(),
                            torch.sigmoid(fake_logits.detach().float()).mean()])

    def _update(self, optimizer: torch.optim.Optimizer, loss: Tensor, before_step: Callable[[], object] = tuple):
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        before_step()
        self.scaler.step(optimizer)

    def _discriminator_loss(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """D's loss on a real and a (detached) fake batch, with its logits on each; a conditional D's auxiliary
        classifier learns the classes of both."""
        d_forward = self.forwards[1]
        real_scores = d_forward(self._augment(real), *_given(labels))
        fake_scores = d_forward(self._augment(fake), *_given(labels))
        real_logits, fake_logits = adversarial_logits(real_scores), adversarial_logits(fake_scores)
        loss = discriminator_loss(self.config.loss, real_logits.float(), fake_logits.float(),
                                  self.config.label_smoothing)
        return loss + _class_loss(real_scores, labels) + _class_loss(fake_scores, labels), real_logits, fake_logits

    def _critic(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """D's real/fake logits alone, for the gradient penalty."""
        return adversarial_logits(self.forwards[1](images, *_given(labels)))

    def _autocast(self, like: Tensor) -> torch.autocast:
        return torch.autocast(like.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _augment(self, images: Tensor) -> Tensor:
        """What D sees of a batch: the images through the run's DiffAugment policy (unchanged without one)."""
        return diff_augment(images, self.config.augment_policy, self.streams.augment)


def _given(labels: Tensor | None) -> tuple[Tensor, ...]:
    """What a conditional G or D takes besides its input: the labels (nothing for an unconditional run)."""
    return () if labels is None else (labels,)


def _class_loss(scores, labels: Tensor | None) -> Tensor | float:
    """The auxiliary classifier's loss on a conditional D's scores; 0 for an unconditional run."""
    return 0.0 if labels is None else class_loss(scores[1].float(), labels)
