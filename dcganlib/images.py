"""Generator images as picture files: one grid per batch, with torchvision and no plotting stack."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from torch import Tensor
from torchvision.utils import make_grid, save_image

from . import storage


def _check_grid(images: Tensor, nrow: int) -> None:
    if len(images) == 0 or nrow < 1:
        raise ValueError(f"a grid needs at least one image and nrow >= 1, got {len(images)} images and nrow {nrow}")


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """One (3, H, W) grid in [0, 1] from generator images in [-1, 1]."""
    _check_grid(images, nrow)
    return make_grid(images.detach().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1))


def write_grid(images: Tensor, file: BinaryIO, nrow: int = 8) -> None:
    """Write generator images in [-1, 1] to `file` as one PNG grid."""
    _check_grid(images, nrow)
    save_image(images.detach().cpu(), file, format="png", nrow=nrow, normalize=True, value_range=(-1, 1))


def save_grid(images: Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Save generator images in [-1, 1] as one PNG grid (whole, through storage.write_atomic); returns the path."""
    _check_grid(images, nrow)
    path = Path(path)
    storage.write_atomic(path, lambda file: write_grid(images, file, nrow))
    return path
