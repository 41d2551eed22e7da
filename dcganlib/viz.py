"""Pictures of a DCGAN run: sample grids shown with matplotlib, training curves, a progress GIF and a report.

`image_grid` and `save_grid` (from `images`) are re-exported here, beside the plots that use them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from . import storage
from .directions import Direction, direction_sweeps
from .images import image_grid, write_grid
from .images import save_grid as save_grid  # re-exported beside the plots
from .models import generate
from .runs import FRAME_GLOB, RunDir

_DPI = 100


def show_images(images: Tensor, nrow: int = 8, title: str | None = None, ax: Axes | None = None) -> Axes:
    """Draw generator images as a grid with matplotlib (grayscale in gray); returns the axes."""
    grid = image_grid(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * grid.shape[1] / grid.shape[2]))
    # make_grid copies one channel to three; show a single channel so the gray colormap applies.
    if images.shape[-3] == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def _series(history: dict, level: str, key: str) -> np.ndarray:
    values = history.get(level, {}).get(key)
    return np.asarray([] if values is None else values, dtype=float)


def _check_not_empty(history: dict, keys: tuple[str, ...]) -> None:
    if not any(len(_series(history, level, key)) for level in ("batch", "epoch") for key in keys):
        raise ValueError(f"history has no {', '.join(keys)} values: nothing to plot yet (train first)")


def _moving_average(values: np.ndarray) -> tuple[int, np.ndarray]:
    """Window and trailing mean; the window grows with the run so long runs stay readable."""
    window = max(1, min(100, len(values) // 20))
    return window, np.convolve(values, np.ones(window) / window, mode="valid")


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save when asked, then close: the figure is returned detached from pyplot."""
    if path is not None:
        path = Path(path)
        storage.write_atomic(path, lambda file: _save_figure(fig, file, path.suffix.lstrip(".") or "png"))
    # Closing stops long runs leaking figures, and a notebook cell ending with the call still shows it once.
    plt.close(fig)
    return fig


def _save_figure(fig: Figure, file: BinaryIO, image_format: str = "png") -> None:
    fig.savefig(file, format=image_format, dpi=_DPI, bbox_inches="tight")


def _two_panels(history: dict, series: dict[str, str], ylabel: str) -> tuple[Figure, tuple[Axes, Axes]]:
    """Per-batch (raw and smoothed) and per-epoch curves of the given history keys."""
    _check_not_empty(history, tuple(series))
    fig, (ax_batch, ax_epoch) = plt.subplots(1, 2, figsize=(11, 4))
    steps = _series(history, "batch", "step")
    epochs = _series(history, "epoch", "epoch")
    for key, label in series.items():
        values = _series(history, "batch", key)
        if len(values):
            x = steps if len(steps) == len(values) else np.arange(len(values))
            (raw,) = ax_batch.plot(x, values, lw=0.6, alpha=0.35)
            window, smooth = _moving_average(values)
            smooth_label = f"{label} (avg of {window})"
            ax_batch.plot(x[window - 1 :], smooth, color=raw.get_color(), lw=1.6, label=smooth_label)
        values = _series(history, "epoch", key)
        if len(values):
            x = epochs if len(epochs) == len(values) else np.arange(1, len(values) + 1)
            ax_epoch.plot(x, values, marker="o", label=label)
    ax_batch.set(title="per batch", xlabel="step", ylabel=ylabel)
    ax_epoch.set(title="per epoch (mean)", xlabel="epoch", ylabel=ylabel)
    ax_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_batch, ax_epoch):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.tight_layout()
    return fig, (ax_batch, ax_epoch)


def plot_losses(history: dict, path: str | Path | None = None) -> Figure:
    """Discriminator and generator losses per batch and per epoch."""
    fig, _ = _two_panels(history, {"loss_d": "loss_D", "loss_g": "loss_G"}, "loss")
    return _finish(fig, path)


def plot_d_outputs(history: dict, path: str | Path | None = None) -> Figure:
    """Mean D(x) and D(G(z)) per batch and per epoch, with the 0.5 a fooled discriminator gives."""
    fig, axes = _two_panels(history, {"d_real": "D(x)", "d_fake": "D(G(z))"}, "mean sigmoid(D)")
    for ax in axes:
        ax.axhline(0.5, color="gray", ls="--", lw=1)
        ax.set_ylim(-0.02, 1.02)
    return _finish(fig, path)


def plot_metric(history: dict, key: str = "fid", path: str | Path | None = None, log_scale: bool = False) -> Figure:
    """A per-epoch metric such as FID; epochs where it was not computed (None or NaN) are skipped.

    log_scale=True draws the values on a log axis, where the late, small gains of a long run stay visible.
    """
    raw = history.get("epoch", {}).get(key)
    raw = [] if raw is None else raw
    values = np.asarray([np.nan if v is None else v for v in raw], dtype=float)
    epochs = _series(history, "epoch", "epoch")
    if len(epochs) != len(values):
        epochs = np.arange(1, len(values) + 1)
    known = ~np.isnan(values)
    if not known.any():
        raise ValueError(f"history['epoch'] has no {key!r} values: nothing to plot yet (train first)")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs[known], values[known], marker="o")
    ax.set(title=f"{key} per epoch", xlabel="epoch", ylabel=key, yscale="log" if log_scale else "linear")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def make_gif(run_dir: str | Path, path: str | Path | None = None, fps: int = 4) -> Path:
    """Animate a run's per-epoch sample grids into a looping GIF (default <run>/progress.gif); returns its path."""
    run = RunDir.open(run_dir)
    frames = run.frames()
    if not frames:
        raise FileNotFoundError(f"no {FRAME_GLOB} frames in {run.samples_dir}: training writes one sample grid per "
                                "epoch there")
    # mode="RGB" so grayscale and RGB frames stack alike; duration is milliseconds per frame, loop=0 forever.
    stack = np.stack([iio.imread(frame, mode="RGB") for frame in frames])

    def write(file: BinaryIO) -> None:
        iio.imwrite(file, stack, extension=".gif", duration=1000 / fps, loop=0)

    if path is None:
        return run.write(run.progress_gif, write)
    storage.write_atomic(Path(path), write)
    return Path(path)


def write_report(
    run_dir: str | Path, history: dict, generator: Callable[..., Tensor], z: Tensor, nrow: int = 8,
    labels: Tensor | None = None,
) -> dict[str, Path]:
    """Write grid.png (from z, and `labels` for a conditional generator), losses.png, d_outputs.png and progress.gif
    (when frames exist) into the run folder; returns where each went."""
    run = RunDir.open(run_dir)
    images = generate(generator, z, labels)
    losses, d_outputs = plot_losses(history), plot_d_outputs(history)
    paths = {"grid": run.write(run.grid, lambda file: write_grid(images, file, nrow)),
             "losses": run.write(run.losses, lambda file: _save_figure(losses, file)),
             "d_outputs": run.write(run.d_outputs, lambda file: _save_figure(d_outputs, file))}
    if run.frames():
        paths["progress"] = make_gif(run)
    return paths


def plot_memorisation(result, fakes: Tensor, train_images: Tensor, closest: int = 8,
                      path: str | Path | None = None) -> Figure:
    """Does G copy its training images? Left: the distance from each fake and from each held-out real image to its
    nearest training image (metrics.memorisation's `result`); right: the `closest` fakes above their nearest
    training images. Copies would pile up at 0, far left of the held-out images."""
    fig, (hist, pairs) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    bins = np.linspace(0, max(result.fake_distance.max(), result.heldout_distance.max()), 40)
    hist.hist(result.heldout_distance, bins=bins, alpha=0.6, density=True, label="held-out real images")
    hist.hist(result.fake_distance, bins=bins, alpha=0.6, density=True, label="generated images")
    hist.axvline(result.threshold, color="k", linestyle="--", linewidth=1,
                 label=f"1% of held-out below ({result.suspicious_fraction:.1%} of fakes)")
    hist.set(xlabel="distance to the nearest training image (feature space)", ylabel="density")
    hist.legend(fontsize=8)
    order = np.argsort(result.fake_distance)[:closest]
    nearest = train_images[torch.from_numpy(result.fake_nearest_index[order])]
    shown = torch.cat([fakes[torch.from_numpy(order)].float().cpu(), _as_generator_range(nearest)])
    show_images(shown, nrow=len(order), ax=pairs)
    pairs.set_title(f"the {len(order)} closest fakes (top) and their nearest training images (bottom)", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def _as_generator_range(images: Tensor) -> Tensor:
    """Images as the generator draws them, in [-1, 1] floats: uint8 data sets are mapped there."""
    return images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()


def plot_directions(
    generator: Callable[[Tensor], Tensor],
    directions: Sequence[Direction],
    z: Tensor,
    offsets: Sequence[float] = (-3, -2, -1, 0, 1, 2, 3),
    path: str | Path | None = None,
) -> Figure:
    """One row per latent direction: the image of z moved by each offset along it, the row named by its label."""
    images = direction_sweeps(generator, z, directions, offsets)
    columns = len(offsets)
    fig, axes = plt.subplots(len(directions), 1, figsize=(0.9 * columns + 1.6, 0.9 * len(directions) + 0.4),
                             squeeze=False)
    for row, (ax, direction) in enumerate(zip(axes[:, 0], directions, strict=True)):
        show_images(images[row * columns : (row + 1) * columns], nrow=columns, ax=ax)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(direction.label, rotation=0, ha="right", va="center")
    tick_centres = (np.arange(columns) + 0.5) * images.shape[-1] + np.arange(columns) * 2 + 2
    axes[-1, 0].set_xticks(tick_centres, [f"{offset:+g}" for offset in offsets])
    axes[-1, 0].set_xlabel("offset along the direction")
    fig.tight_layout(h_pad=0.2)
    return _finish(fig, path)
