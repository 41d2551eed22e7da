"""FID during training, every `fid_every` epochs, and the best score so far, whose state is kept in best.pt."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import metrics
from .config import Config
from .data import BatchLoader
from .models import make_noise
from .seeds import stream_generator


class FidTracker:
    """FID of `fid_samples` images from the run's fixed FID noise, and the lowest score so far.

    Digits: the offline FID (the shipped MNIST classifier) against the held-out mnist-5k digits. Any other data set:
    the standard FID (pytorch-fid's Inception) against as many of the run's own training images, the first of
    epoch 0's order, whose statistics are measured once.
    """

    def __init__(self, config: Config, device: torch.device, loader: BatchLoader):
        self.config, self.device, self.loader = config, device, loader
        self.best: float | None = None
        self._reference: tuple[torch.nn.Module, metrics.RealReference] | None = None

    def due(self, epoch: int) -> bool:
        """Whether the epoch just completed is one to measure."""
        return bool(self.config.fid_every) and epoch % self.config.fid_every == 0

    def prepare(self) -> None:
        """Load the standard FID's network and real statistics now, so a missing package or download fails at once."""
        if self.config.fid_every and not self.config.offline_fid:
            self.reference()

    def measure(self, sample: Callable[..., Tensor]) -> float:
        """FID of the images that `sample` (noise [, labels] -> images in [-1, 1]) draws from the run's FID noise;
        for a conditional run, with labels drawn as often as each class occurs in the training data."""
        cfg = self.config
        stream = stream_generator(cfg.seed, "fid")
        noise = make_noise(cfg.fid_samples, cfg.z_dim, generator=stream)
        if cfg.num_classes:
            frequencies = torch.bincount(self.loader.dataset.labels, minlength=cfg.num_classes).double()
            fakes = sample(noise, torch.multinomial(frequencies, cfg.fid_samples, replacement=True, generator=stream))
        else:
            fakes = sample(noise)
        if cfg.offline_fid:
            return metrics.offline_fid(fakes, reference=metrics.real_reference()).fid
        network, real = self.reference()
        fake = metrics.feature_statistics(metrics.inception_features(fakes, network))
        return metrics.frechet_distance(*fake, real.mu, real.sigma)

    def is_new_best(self, fid: float | None) -> bool:
        """Whether `fid` is the lowest so far (ties go to the newer epoch); if so it becomes the best."""
        if fid is None or (self.best is not None and fid > self.best):
            return False
        self.best = fid
        return True

    def reference(self) -> tuple[torch.nn.Module, metrics.RealReference]:
        """The standard FID's network and the statistics of `fid_samples` training images."""
        if self._reference is None:
            network = metrics.load_inception(self.device)
            indices = self.loader.order(0)[: self.config.fid_samples].tolist()
            reals = torch.stack([self.loader.dataset[i] for i in indices])
            mu, sigma = metrics.feature_statistics(metrics.inception_features(reals, network))
            self._reference = network, metrics.RealReference(mu, sigma, len(indices), "training images",
                                                             metrics.FID_NETWORK)
        return self._reference
