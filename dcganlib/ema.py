"""An exponential moving average of the generator's weights, which samples more steadily than the live generator."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .models import make_noise, recalibrate_batch_norm
from .seeds import stream_generator

RECALIBRATION_IMAGES = 1024  # the noise behind the averaged generator's own BatchNorm statistics


def warmed_up_decay(decay: float, step: int) -> float:
    """The EMA decay at `step`: early on the average follows G closely, else the first epochs' samples would blur."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, parameter by parameter; buffers copied from `model`."""
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - decay)
    for average_buffer, buffer in zip(average.buffers(), model.buffers(), strict=True):
        average_buffer.copy_(buffer)


class AveragedGenerator:
    """A copy of G whose weights follow G's as an exponential moving average (`decay`, warmed up), in eval mode."""

    def __init__(self, generator: nn.Module, decay: float, seed: int, batch_size: int, seeding: str = "hashed"):
        self.model = copy.deepcopy(generator).eval()
        self.decay, self.seed, self.batch_size, self.seeding = decay, seed, batch_size, seeding

    def update(self, generator: nn.Module, step: int) -> None:
        """Move the average towards `generator`'s weights after training step `step`."""
        update_average(self.model, generator, warmed_up_decay(self.decay, step))

    def recalibrate(self) -> None:
        """Give the average BatchNorm statistics of its own weights (it would otherwise use the live G's).

        The same seeded noise every time, away from the training RNGs; the next update copies the live statistics
        back in, so training, and a resume from a checkpoint taken now, go on exactly as they would have.
        """
        recalibrate(self.model, self.seed, self.batch_size, self.seeding)


def recalibrate(generator: nn.Module, seed: int, batch_size: int, seeding: str = "hashed") -> None:
    """Set `generator`'s BatchNorm statistics to its own, on the recalibration noise of a run seeded `seed`, in
    `batch_size` batches (a conditional generator's with every class in turn)."""
    stream = stream_generator(seed, "recalibration", seeding=seeding)
    noise = make_noise(RECALIBRATION_IMAGES, generator.z_dim, generator=stream)
    if not getattr(generator, "num_classes", 0):
        recalibrate_batch_norm(generator, noise.split(batch_size))
        return
    labels = torch.arange(RECALIBRATION_IMAGES) % generator.num_classes
    recalibrate_batch_norm(generator, zip(noise.split(batch_size), labels.split(batch_size), strict=True))
