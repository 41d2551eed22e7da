"""Pictures that explain the course's ideas: a transposed convolution stamp by stamp, ReLU against LeakyReLU, the
size of activations with and without BatchNorm, and metrics of several runs side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from .models import stage_outputs


def overlap_counts(kernel: int, stride: int, size: int) -> Tensor:
    """How many input pixels a stride-`stride`, kernel-`kernel` transposed convolution adds into each output pixel of
    a `size` x `size` input (no padding): the pattern behind checkerboard artefacts when it is uneven."""
    ones = torch.ones(1, 1, size, size)
    return F.conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel), stride=stride)[0, 0]


def plot_transposed_convolution(kernel: int, stride: int, size: int = 3) -> Figure:
    """Each input pixel stamps a kernel-sized patch into the output, `stride` pixels apart (left); where stamps
    overlap their contributions add up (right, the count per output pixel)."""
    counts = overlap_counts(kernel, stride, size).numpy()
    out = counts.shape[0]
    fig, (ax_stamps, ax_counts) = plt.subplots(1, 2, figsize=(9, 4.2))
    colours = plt.cm.tab10.colors
    for row in range(size):
        for col in range(size):
            colour = colours[(row * size + col) % len(colours)]
            inset = 0.06 + 0.05 * ((row + col) % 2)  # neighbouring stamps' outlines stay apart where they overlap
            ax_stamps.add_patch(Rectangle((col * stride + inset, row * stride + inset), kernel - 2 * inset,
                                          kernel - 2 * inset, fill=True, alpha=0.12, facecolor=colour,
                                          edgecolor=colour, lw=2))
    ax_stamps.set(xlim=(0, out), ylim=(out, 0), aspect="equal",
                  title=f"{size}x{size} input pixels: each stamps\na {kernel}x{kernel} kernel, {stride} px from "
                        "the last")
    ax_stamps.set_xticks(range(out + 1))
    ax_stamps.set_yticks(range(out + 1))
    ax_stamps.grid(True, color="gray", lw=0.5)
    ax_stamps.tick_params(labelbottom=False, labelleft=False)
    ax_counts.imshow(counts, cmap="Blues", vmin=0)
    for (row, col), value in np.ndenumerate(counts):
        ax_counts.text(col, row, f"{value:.0f}", ha="center", va="center")
    ax_counts.set(title=f"stamps added into each of\nthe {out}x{out} output pixels")
    ax_counts.set_axis_off()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_activation_functions(functions: Mapping[str, Callable[[Tensor], Tensor]], low: float = -3.0,
                              high: float = 3.0) -> Figure:
    """Each function's value (left) and gradient (right) over [low, high], the gradient from autograd."""
    x = torch.linspace(low, high, 601, dtype=torch.float64, requires_grad=True)
    fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, function in functions.items():
        y = function(x)
        (gradient,) = torch.autograd.grad(y.sum(), x)
        ax_value.plot(x.detach(), y.detach(), label=name)
        ax_grad.plot(x.detach(), gradient, label=name)
    ax_value.set(title="value", xlabel="input")
    ax_grad.set(title="gradient passed back", xlabel="input")
    for ax in (ax_value, ax_grad):
        ax.axhline(0, color="gray", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


@torch.no_grad()
def plot_stage_statistics(nets: Mapping[str, nn.Sequential], x: Tensor) -> Figure:
    """The standard deviation of every stage's output as `x` goes through each of `nets` (in training mode)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(nets)
    for index, (name, net) in enumerate(nets.items()):
        stds = [out.float().std().item() for out in stage_outputs(net, x)]
        ax.bar(np.arange(1, len(stds) + 1) + (index - (len(nets) - 1) / 2) * width, stds, width, label=name)
    ax.set(title="spread (std) of each stage's output", xlabel="stage", ylabel="std", yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_runs(curves: Mapping[str, Mapping[str, Sequence[float]]], keys: Sequence[str],
              log_scale: Sequence[str] = ()) -> Figure:
    """Per-epoch curves of several runs side by side: one panel per key, one line per run."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, run in curves.items():
            values = run[key]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.set(title=key, xlabel="epoch", yscale="log" if key in log_scale else "linear")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig
