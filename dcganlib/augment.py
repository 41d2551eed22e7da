"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020): more data for D on small data sets.

D sees every image, real and fake, through the same random colour, translation and cutout in both the D and the G
step. Because the transforms are differentiable, G still gets gradients through them; because fakes are
transformed too, G is never pushed to draw the augmentations themselves. With a few thousand images this keeps D
from memorising the training set, the usual reason a small-data GAN stalls or collapses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

TRANSLATION_RATIO = 0.125  # shifts of up to 1/8 of the image, as in the paper
CUTOUT_RATIO = 0.5  # a square of half the image's side is blanked


def _uniform(x: Tensor, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """One uniform draw per image, shaped (N, 1, 1, 1)."""
    draw = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
    return low + (high - low) * draw


def colour(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random brightness (±0.5), saturation (×0 to ×2) and contrast (×0.5 to ×1.5), each per image."""
    x = x + _uniform(x, -0.5, 0.5, generator)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0, generator) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator) + mean


def translation(x: Tensor, generator: torch.Generator | None = None, ratio: float = TRANSLATION_RATIO) -> Tensor:
    """Shift each image by up to ratio of its size in x and y; what moves in from outside is 0."""
    n, _, h, w = x.shape
    shift_y, shift_x = (torch.randint(-round(size * ratio), round(size * ratio) + 1, (n, 1, 1), generator=generator,
                                      device=x.device) for size in (h, w))
    # Index into a copy padded with one row and column of zeros on each side: out-of-range reads land there.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + shift_y + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + shift_x + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, generator: torch.Generator | None = None, ratio: float = CUTOUT_RATIO) -> Tensor:
    """Set to 0 a square of ratio of the image's side, centred anywhere on the image (clipped at its edges)."""
    n, _, h, w = x.shape
    keep = torch.ones(n, h, w, device=x.device, dtype=x.dtype)
    spans = []
    for size, axis_length in ((round(h * ratio), h), (round(w * ratio), w)):
        centre = torch.randint(0, axis_length + (1 - size % 2), (n, 1), generator=generator, device=x.device)
        start = centre - size // 2
        positions = torch.arange(axis_length, device=x.device).view(1, -1)
        spans.append((positions >= start) & (positions < start + size))
    rows, cols = spans
    keep[rows.unsqueeze(2) & cols.unsqueeze(1)] = 0
    return x * keep.unsqueeze(1)


AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "colour": colour, "translation": translation, "cutout": cutout,
}


def diff_augment(x: Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """x through each augmentation of policy in order (names from AUGMENTATIONS); an empty policy returns x."""
    for name in policy:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
        x = AUGMENTATIONS[name](x, generator)
    return x
