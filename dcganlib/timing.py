"""How long training will take: a few real steps of a config's networks, timed on random data."""

from __future__ import annotations

import time

import torch

from .catalog import dataset_size
from .config import Config
from .devices import autocast_dtype, pick_device
from .models import build_models, make_noise
from .step import conditional_train_step, plain_train_step


def seconds_per_step(config: Config, device=None, steps: int = 3) -> float:
    """Seconds one D + G step of `config`'s networks takes on `device`, under the run's autocast precision.

    Throwaway copies of the networks are timed, and the global RNG is restored: no run is touched.
    """
    device = pick_device(device)
    amp_dtype = autocast_dtype(config.precision, device)
    with torch.random.fork_rng(devices=[]):
        generator, discriminator = (model.to(device) for model in build_models(config))
        opt_g, opt_d = (torch.optim.Adam(model.parameters()) for model in (generator, discriminator))
        real = torch.rand(config.batch_size, config.channels, config.image_size, config.image_size, device=device)
        labels = torch.arange(config.batch_size, device=device) % max(1, config.num_classes)

        def step() -> None:
            z = make_noise(config.batch_size, config.z_dim, device=device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                if config.num_classes:
                    conditional_train_step(generator, discriminator, opt_g, opt_d, real, z, labels)
                else:
                    plain_train_step(generator, discriminator, opt_g, opt_d, real, z)

        step()  # the first step pays for allocations and kernel selection
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronize(device)
        return (time.perf_counter() - started) / steps


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_time(config: Config, device=None) -> str:
    """How long `config.epochs` epochs will take on `device`, from a few steps timed now: one line for notebooks."""
    per_step = seconds_per_step(config, device)
    images = dataset_size(config.dataset)
    if images is None:
        return f"One training step takes about {per_step:.3f} s here ({config.batch_size} images)."
    steps = images // config.batch_size * config.epochs
    return (f"{config.epochs} epochs of {config.dataset} ({steps:,} steps) will take about "
            f"{duration(per_step * steps)} here ({per_step:.3f} s a step, timed on random data).")


def duration(seconds: float) -> str:
    """A duration in words a person reads at a glance: 40 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
