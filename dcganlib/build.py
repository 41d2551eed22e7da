"""What a Trainer is made of: its networks (with the EMA copy), its optimizers, the forward passes it trains
through (DDP, torch.compile), its batches and the fixed noise of its sample grids. Each builder draws from the
global RNG only as its docstring says."""

from __future__ import annotations

import torch
from torch import nn

from . import distributed
from .config import Config, ConfigError
from .data import BatchLoader, load_dataset
from .ema import AveragedGenerator
from .models import build_models, make_noise
from .seeds import stream_generator, stream_seed


def build_networks(config: Config, device: torch.device, group: distributed.Group,
                   memory_format: torch.memory_format) -> tuple[nn.Module, nn.Module, AveragedGenerator | None]:
    """G, D and (ema_decay > 0, on rank 0, which alone samples) G's moving average, on `device`.

    Seeds the global torch RNG with the run's "weights" stream first: the initial weights are the run's first draw.
    """
    torch.manual_seed(stream_seed(config.seed, "weights", config.seeding))
    generator, discriminator = (model.to(device, memory_format=memory_format) for model in build_models(config))
    # Copied before any SyncBatchNorm: rank 0 alone runs the EMA generator, to sample and to recalibrate it.
    average = (AveragedGenerator(generator, config.ema_decay, config.seed, config.batch_size, config.seeding)
               if config.ema_decay > 0 and group.is_main else None)
    generator, discriminator = (distributed.batch_norm(model, group, device, config.sync_batch_norm)
                                for model in (generator, discriminator))
    return generator, discriminator, average


def build_optimizers(config: Config, generator: nn.Module, discriminator: nn.Module, device: torch.device,
                     amp_dtype: torch.dtype | None) -> tuple[torch.optim.Adam, torch.optim.Adam, torch.amp.GradScaler]:
    """Adam for G (lr) and D (lr_d, else lr), and the loss scaler that fp16 needs (disabled otherwise)."""
    # One fused kernel per step on CUDA; elsewhere the multi-tensor (foreach) loop, the fastest there is.
    implementation = {"fused": True} if device.type == "cuda" else {"foreach": True}
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas, **implementation)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d or config.lr, betas=betas, **implementation)
    # fp16's small range underflows gradients: the scaler multiplies the loss before backward and divides after.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return opt_g, opt_d, scaler


def training_forwards(config: Config, generator: nn.Module, discriminator: nn.Module, device: torch.device,
                      group: distributed.Group) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The forward passes the step calls: G, D, and D as G's update reaches it; the networks themselves, or
    wrappers sharing their weights (DistributedDataParallel under torchrun, torch.compile when asked).

    G's update runs through D without updating it, so under torchrun it calls D past the DDP wrapper, which would
    wait for D's gradients.
    """
    g_forward = _compiled(config, distributed.wrap(generator, group, device))
    d_forward = _compiled(config, distributed.wrap(discriminator, group, device))
    d_forward_for_g = _compiled(config, discriminator) if group.active else d_forward
    return g_forward, d_forward, d_forward_for_g


def _compiled(config: Config, model: nn.Module) -> nn.Module:
    # "reduce-overhead" replays each compiled pass as a CUDA graph, cutting the launch cost that dominates the small
    # course net. BatchNorm's running-stat updates in training mode mutate buffers, which may make torch skip the
    # capture; benchmarks/gpu_check.py measures whether it does.
    return torch.compile(model, mode=config.compile_mode) if config.compile else model


def build_loader(config: Config, device: torch.device, group: distributed.Group,
                 memory_format: torch.memory_format) -> BatchLoader:
    """The run's batches: its data set (read by rank 0 first under torchrun), this process's share of each batch;
    with their labels for a conditional run."""
    dataset = None
    conditional = config.num_classes > 0
    for rank_0_turn in (True, False):  # rank 0 reads (and downloads) first; the others then find the files
        if group.is_main == rank_0_turn:
            dataset = load_dataset(config.dataset, config.data_root, config.image_size, config.channels,
                                   labelled=conditional)
        distributed.barrier(group)
    if conditional and len(dataset.class_names) != config.num_classes:  # known only now for a folder
        raise ConfigError(f"num_classes: {config.dataset} has {len(dataset.class_names)} classes "
                          f"({', '.join(dataset.class_names)}), not {config.num_classes}; set num_classes to "
                          f"{len(dataset.class_names)}")
    if config.batch_size > len(dataset):  # known only now for a folder: of images
        raise ConfigError(f"batch_size: {config.batch_size} is more than the {len(dataset)} images in "
                          f"{config.dataset}; choose a batch size of at most {len(dataset)}")
    if config.batch_size % group.world_size:
        raise ConfigError(f"batch_size: {config.batch_size} images per step do not split evenly over "
                          f"{group.world_size} processes; choose a multiple of {group.world_size}")
    seed = stream_seed(config.seed, "data_order", config.seeding)
    return BatchLoader(dataset, config.batch_size, seed=seed, device=device,
                       resident=config.resident_data, memory_format=memory_format, rank=group.rank,
                       world_size=group.world_size, labelled=conditional)


def fixed_samples(config: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The noise (and labels) behind every epoch's sample grid, and the grid's columns.

    Unconditional: sample_count latents, 8 a row. Conditional: one row per class, whose columns share their latent
    from row to row, so that each column keeps its style while the class changes.
    """
    stream = stream_generator(config.seed, "fixed_noise", seeding=config.seeding)
    if not config.num_classes:
        return make_noise(config.sample_count, config.z_dim, generator=stream).to(device), None, 8
    columns = max(1, config.sample_count // config.num_classes)
    noise = make_noise(columns, config.z_dim, generator=stream).repeat(config.num_classes, 1, 1, 1)
    return noise.to(device), torch.arange(config.num_classes).repeat_interleave(columns).to(device), columns
