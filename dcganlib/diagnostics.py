"""Watching runs for failure: after every epoch, FID and how many digit classes the generator draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .config import Config
from .metrics import mode_coverage
from .models import make_noise
from .train import Trainer


def fid_and_classes_per_epoch(config: Config, run_dir, *, probe_samples: int = 1000, seed: int = 0,
                              log: Callable[[str], None] = print) -> dict[str, list]:
    """Train `config` afresh in `run_dir` with an offline FID after every epoch; returns per-epoch "fid" and
    "classes" (digit classes among `probe_samples` images from fixed noise, by the shipped MNIST classifier)."""
    probe = make_noise(probe_samples, config.z_dim, seed=seed)
    classes: list[int] = []

    def count_classes(trainer: Trainer) -> None:
        classes.append(mode_coverage(trainer.sample(probe))["classes_covered"])

    trainer = Trainer(dataclasses.replace(config, eval_every=1), run_dir, resume=False, progress=False, log=log)
    trainer.fit(on_epoch_end=count_classes)
    return {"fid": trainer.history["epoch"]["fid"], "classes": classes}
