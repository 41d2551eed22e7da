"""Sample quality during training: every `eval_every` epochs, the metrics of `Config.metrics` (scores.METRICS) on one
set of features, and the best score of `Config.best_metric` so far, whose state best.pt keeps."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import metrics
from .config import Config
from .data import BatchLoader
from .models import make_noise
from .scores import COLUMNS, METRICS
from .seeds import stream_generator


class Evaluation:
    """The run's metrics on `eval_samples` images drawn from its fixed evaluation noise, and the best score so far.

    Digits: on the shipped MNIST classifier's features, against the held-out mnist-5k digits. Any other data set:
    on Inception's (pytorch-fid), against as many of the run's own training images, the first of epoch 0's order.
    The real features are measured once.
    """

    def __init__(self, config: Config, device: torch.device, loader: BatchLoader):
        self.config, self.device, self.loader = config, device, loader
        self.best: float | None = None  # of config.best_metric
        self._network: torch.nn.Module | None = None  # Inception, off the digits
        self._real: Tensor | None = None

    def due(self, epoch: int) -> bool:
        """Whether the epoch just completed is one to measure."""
        return bool(self.config.eval_every) and epoch % self.config.eval_every == 0

    def prepare(self) -> None:
        """Load the feature network and the real features now, so a missing package or download fails at once."""
        if self.config.eval_every:
            self.real_features()

    def measure(self, sample: Callable[..., Tensor]) -> dict[str, float]:
        """Every column of the run's metrics for the images that `sample` (noise [, labels] -> images in [-1, 1])
        draws from the run's evaluation noise; for a conditional run, with labels drawn as often as each class
        occurs in the training data."""
        cfg = self.config
        stream = stream_generator(cfg.seed, "evaluation", seeding=cfg.seeding)
        noise = make_noise(cfg.eval_samples, cfg.z_dim, generator=stream)
        if cfg.num_classes:
            frequencies = torch.bincount(self.loader.dataset.labels, minlength=cfg.num_classes).double()
            fakes = sample(noise, torch.multinomial(frequencies, cfg.eval_samples, replacement=True,
                                                    generator=stream))
        else:
            fakes = sample(noise)
        real, fake = self.real_features(), self.features(fakes)
        scores = {}
        for name in cfg.metric_names:
            scores.update(zip(METRICS[name].columns, METRICS[name].compute(real, fake), strict=True))
        return scores

    def is_new_best(self, scores: dict[str, float] | None) -> bool:
        """Whether `scores` hold the best `best_metric` so far (ties go to the newer epoch); if so it is kept."""
        value = (scores or {}).get(self.config.best_metric)
        if value is None:
            return False
        higher = COLUMNS[self.config.best_metric]
        if self.best is not None and (value < self.best if higher else value > self.best):
            return False
        self.best = value
        return True

    def features(self, images: Tensor) -> Tensor:
        """The features the metrics compare: the MNIST classifier's for grey digits, else Inception's."""
        if self.config.offline_fid:
            return metrics.classifier_features(images)
        if self._network is None:
            self._network = metrics.load_inception(self.device)
        return metrics.inception_features(images, self._network)

    def real_features(self) -> Tensor:
        """The real side, measured once: the held-out digits, or `eval_samples` of the run's training images."""
        if self.config.offline_fid:
            return metrics.split_features("heldout")
        if self._real is None:
            indices = self.loader.order(0)[: self.config.eval_samples].tolist()
            self._real = self.features(torch.stack([self.loader.dataset[i] for i in indices]))
        return self._real
