"""Reading a run for failure: after every epoch its losses, D's outputs, FID and the digit classes G draws, kept
small enough to ship; four real runs (healthy, never starts, D wins, partial collapse) and one unlabelled run come
with the package for notebook 4's lab."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from . import storage
from .config import Config
from .history import LABELS, STAT_NAMES
from .metrics import mode_coverage
from .models import make_noise
from .runs import ASSETS
from .train import Trainer
from .viz import show_images

SHIPPED_RUNS = ("healthy", "never-starts", "d-wins", "partial-collapse", "unlabelled")
EPOCH_COLUMNS = ("epoch", *STAT_NAMES, "fid", "classes")
SAMPLES_KEPT = 32  # images of the last epoch's fixed-noise grid a record keeps


@dataclass
class RecordedRun:
    """A finished run in a few kilobytes: how it was trained, each epoch's mean losses and D outputs, FID and the
    number of digit classes among its probe samples, the digit counts per epoch and its last samples."""

    title: str
    settings: dict  # the Config it trained with, as Config.to_dict writes it
    epochs: dict[str, list[float]]  # EPOCH_COLUMNS, one value per epoch
    class_counts: list[list[int]]  # per epoch, how many probe samples the MNIST classifier read as each digit
    samples: Tensor  # uint8 (N, C, H, W): the last epoch's fixed-noise images

    def save(self, path: str | Path) -> Path:
        """Write the record as one compressed .npz (whole or not at all)."""
        path = Path(path)
        storage.write_atomic(path, self._write)
        return path

    def _write(self, file: BinaryIO) -> None:
        meta = json.dumps({"title": self.title, "settings": self.settings})
        columns = {f"epoch_{name}": np.asarray(self.epochs[name], dtype=np.float64) for name in EPOCH_COLUMNS}
        np.savez_compressed(file, meta=np.asarray(meta), class_counts=np.asarray(self.class_counts, dtype=np.int32),
                            samples=self.samples.numpy(), **columns)

    @classmethod
    def load(cls, path: str | Path) -> RecordedRun:
        """A record that `save` wrote."""
        with np.load(path, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            epochs = {name: arrays[f"epoch_{name}"].tolist() for name in EPOCH_COLUMNS}
            return cls(meta["title"], meta["settings"], epochs, arrays["class_counts"].tolist(),
                       torch.from_numpy(arrays["samples"].copy()))

    def images(self) -> Tensor:
        """The kept samples as generator images in [-1, 1]."""
        return self.samples.float() / 127.5 - 1


def record_run(config: Config, run_dir, title: str, *, probe_samples: int = 1000, seed: int = 0,
               log: Callable[[str], None] = print) -> RecordedRun:
    """Train `config` afresh in `run_dir` with an offline FID after every epoch and the digit classes drawn from
    `probe_samples` fixed latents (by the shipped MNIST classifier); returns the run's record."""
    probe = make_noise(probe_samples, config.z_dim, seed=seed)
    coverages: list[dict] = []

    def count_classes(trainer: Trainer) -> None:
        coverages.append(mode_coverage(trainer.sample(probe)))

    scored = dataclasses.replace(config, eval_every=1, metrics="fid", best_metric="fid")
    trainer = Trainer(scored, run_dir, resume=False, progress=False, log=log)
    trainer.fit(on_epoch_end=count_classes)
    epochs = {name: list(trainer.history["epoch"][name]) for name in EPOCH_COLUMNS if name != "classes"}
    epochs["classes"] = [coverage["classes_covered"] for coverage in coverages]
    class_counts = [coverage["counts"] for coverage in coverages]
    samples = ((trainer.sample()[:SAMPLES_KEPT] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return RecordedRun(title, scored.to_dict(), epochs, class_counts, samples)


def shipped_run(name: str) -> RecordedRun:
    """One of the SHIPPED_RUNS: real runs on the 5,000 digits (tools/record_failure_runs.py made them)."""
    if name not in SHIPPED_RUNS:
        raise ValueError(f"unknown shipped run {name!r}: choose one of {', '.join(SHIPPED_RUNS)}")
    return RecordedRun.load(ASSETS / f"run-{name}.npz")


def _plot_row(axes, run: RecordedRun) -> None:
    """One run across a row: samples, losses, D's outputs, FID with classes, the last epoch's digit counts."""
    samples_ax, loss_ax, d_ax, fid_ax, counts_ax = axes
    epochs = run.epochs["epoch"]
    show_images(run.images(), nrow=8, ax=samples_ax)
    samples_ax.set_title(f"{run.title}: samples, epoch {int(epochs[-1]) if epochs else 0}", loc="left")
    for ax, names in ((loss_ax, ("loss_d", "loss_g")), (d_ax, ("d_real", "d_fake"))):
        for name in names:
            ax.plot(epochs, run.epochs[name], marker=".", label=LABELS[name])
        ax.legend(fontsize="small")
    d_ax.set_ylim(0, 1)
    fid_ax.plot(epochs, run.epochs["fid"], marker=".", color="C2")
    fid_ax.set_yscale("log")
    classes_ax = fid_ax.twinx()
    classes_ax.plot(epochs, run.epochs["classes"], marker=".", color="C3")
    classes_ax.set_ylim(0, 10.5)
    classes_ax.set_ylabel("classes drawn", color="C3")
    fid_ax.set_ylabel("FID", color="C2")
    if run.class_counts:
        counts = np.asarray(run.class_counts[-1], dtype=float)
        counts_ax.bar(range(10), counts / counts.sum(), color="C4")
    counts_ax.axhline(0.1, color="gray", linestyle="--", linewidth=1)
    counts_ax.set(xticks=range(10), ylim=(0, 1), xlabel="digit")
    for ax, title in ((loss_ax, "losses"), (d_ax, "D(x) and D(G(z))"), (fid_ax, "FID and classes drawn")):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    counts_ax.set_title("digits drawn, last epoch")


def plot_recorded_runs(runs: Mapping[str, RecordedRun] | list[RecordedRun]) -> Figure:
    """Runs one per row, side by side: last samples, losses, D(x) and D(G(z)), FID and classes drawn per epoch,
    and the share of each digit among the last epoch's probe samples (the dashed line: a tenth each)."""
    runs = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    if not runs:
        raise ValueError("no runs to plot: pass at least one RecordedRun")
    fig, axes = plt.subplots(len(runs), 5, figsize=(22, 3.4 * len(runs)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.6, 1, 1, 1, 1]})
    for row, run in zip(axes, runs, strict=True):
        _plot_row(row, run)
    fig.tight_layout()
    plt.close(fig)
    return fig
