"""CelebA without the network: gdown and Kaggle stand in for Google Drive and Kaggle, and a small zip laid out like
img_align_celeba.zip stands in for the real one (its size and MD5 become the known ones)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import gdown
import pytest
import torch
from PIL import Image

from dcganlib import celeba
from dcganlib.data import DatasetUnavailableError, load_dataset

FACES = 5


def write_celeba_zip(path: Path, count: int = FACES) -> Path:
    """A zip laid out like img_align_celeba.zip: 178 x 218 JPEGs named 000001.jpg ... in img_align_celeba/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(count):
            image = Image.new("RGB", (178, 218), (40 * i, 100, 50))
            with zf.open(f"img_align_celeba/{i + 1:06d}.jpg", "w") as member:
                image.save(member, format="JPEG", quality=95)
    return path


@pytest.fixture
def known_zip(tmp_path, monkeypatch) -> Path:
    """The stand-in zip, made the known one: celeba's size, MD5 and image count are its own."""
    made = write_celeba_zip(tmp_path / "made" / celeba.ZIP_NAME)
    monkeypatch.setattr(celeba, "ZIP_BYTES", made.stat().st_size)
    monkeypatch.setattr(celeba, "ZIP_MD5", hashlib.md5(made.read_bytes()).hexdigest())
    monkeypatch.setattr(celeba, "IMAGES", FACES)
    return made


def drive_sends(content: bytes | Path):
    """A gdown.download that writes `content` (or a copy of a file) where it was asked to."""
    def download(*, id, output, quiet):
        assert id == celeba.DRIVE_ID
        Path(output).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
        return output
    return download


QUOTA_PAGE = b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>"


def no_kaggle(handle, *args, **kwargs):
    raise ConnectionError("Kaggle is unreachable")


def test_the_zip_is_downloaded_checked_and_read_without_extracting(known_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(gdown, "download", drive_sends(known_zip))
    faces = load_dataset("celeba", root=tmp_path / "data", image_size=32, channels=3)
    assert faces.images.shape == (FACES, 3, 32, 32)
    assert [round(red / 40) for red in faces.images[:, 0, 16, 16].tolist()] == list(range(FACES))
    assert sorted(path.name for path in (tmp_path / "data" / "celeba").iterdir()) == [celeba.ZIP_NAME]


def test_prepared_faces_need_neither_the_zip_nor_the_network_again(known_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gdown, "download", drive_sends(known_zip))
    first = load_dataset("celeba", root=tmp_path / "data", image_size=32, channels=3)
    celeba.zip_path(tmp_path / "data").unlink()
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("no download once prepared"))
    capsys.readouterr()
    again = load_dataset("celeba", root=tmp_path / "data", image_size=32, channels=3)
    assert torch.equal(again.images, first.images) and "Loaded prepared data " in capsys.readouterr().out


def test_a_zip_put_there_by_hand_is_used_after_its_check(known_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("the zip is there: no download"))
    celeba.zip_path(tmp_path / "data").parent.mkdir(parents=True)
    celeba.zip_path(tmp_path / "data").write_bytes(known_zip.read_bytes())
    assert len(load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=3, download=False)) == FACES


@pytest.mark.parametrize(("change", "why"), [
    (lambda data: data[:-10], r"it holds [\d,]+ bytes, not [\d,]+"),
    (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "its MD5 checksum differs"),
])
def test_a_zip_that_is_not_the_known_file_is_refused(known_zip, tmp_path, change, why):
    target = celeba.zip_path(tmp_path / "data")
    target.parent.mkdir(parents=True)
    target.write_bytes(change(known_zip.read_bytes()))
    with pytest.raises(DatasetUnavailableError, match=rf"is not the known img_align_celeba.zip \({why}\): delete it "
                                                      rf"and run again.*dataset 'folder:{target}'"):
        load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=3)


def test_drives_quota_page_falls_back_to_kaggle_and_then_says_what_works(tmp_path, monkeypatch):
    import kagglehub

    monkeypatch.setattr(gdown, "download", drive_sends(QUOTA_PAGE))
    monkeypatch.setattr(kagglehub, "dataset_download", no_kaggle)
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=3)
    message = str(error.value)
    assert "\n" not in message
    assert "HTML page instead of the zip (usually 'quota exceeded'" in message
    assert "Kaggle's copy could not be fetched either (ConnectionError: Kaggle is unreachable)" in message
    assert f"Upload {celeba.ZIP_NAME} to {celeba.zip_path(tmp_path / 'data')}" in message
    assert "kagglehub.login()" in message
    assert list((tmp_path / "data" / "celeba").iterdir()) == []  # no .part left to mistake for data


def test_a_failed_download_leaves_nothing_and_names_the_error(tmp_path, monkeypatch):
    import kagglehub

    def refused(**kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", refused)
    monkeypatch.setattr(kagglehub, "dataset_download", no_kaggle)
    with pytest.raises(DatasetUnavailableError, match="Google Drive download failed .Too many users"):
        load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=3)
    assert list((tmp_path / "data" / "celeba").iterdir()) == []


def fill_kaggle_cache(cache: Path, count: int) -> Path:
    """Kaggle's CelebA as kagglehub leaves it after a download: extracted into its cache, marked complete."""
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    handle = parse_dataset_handle(celeba.KAGGLE_HANDLE)
    folder = Path(Cache().get_path(handle)) / celeba.KAGGLE_FOLDER
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (178, 218), (40 * i, 100, 50)).save(folder / f"{i + 1:06d}.jpg", quality=95)
    Cache().mark_as_complete(handle)
    return folder


def test_kaggles_copy_through_the_real_kagglehub_api(known_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    folder = fill_kaggle_cache(tmp_path / "kagglehub", FACES)
    monkeypatch.setattr(gdown, "download", drive_sends(QUOTA_PAGE))
    faces = load_dataset("celeba", root=tmp_path / "data", image_size=32, channels=3)
    assert faces.images.shape == (FACES, 3, 32, 32)
    text = capsys.readouterr().out
    assert "trying Kaggle's copy (jessicali9530/celeba-dataset/versions/2) through kagglehub" in text
    assert f"Preparing {folder} once" in text


def test_a_kaggle_copy_with_missing_images_is_refused(known_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    fill_kaggle_cache(tmp_path / "kagglehub", FACES - 2)
    monkeypatch.setattr(gdown, "download", drive_sends(QUOTA_PAGE))
    with pytest.raises(DatasetUnavailableError, match=rf"holds 3 images, not {FACES}: delete that folder"):
        load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=3)


def test_without_download_a_missing_zip_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("download=False"))
    target = celeba.zip_path(tmp_path / "data")
    with pytest.raises(DatasetUnavailableError, match=rf"not at {target} and download=False; download "
                                                      rf"img_align_celeba.zip by hand .* put it at {target}"):
        load_dataset("celeba", root=tmp_path / "data", download=False)


def test_a_folder_extracted_by_hand_is_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(gdown, "download", lambda **kwargs: pytest.fail("the folder is there: no download"))
    folder = celeba.zip_path(tmp_path / "data").parent / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (178, 218), (i, i, i)).save(folder / f"{i + 1:06d}.jpg")
    assert len(load_dataset("celeba", root=tmp_path / "data", image_size=16, channels=1)) == 3
