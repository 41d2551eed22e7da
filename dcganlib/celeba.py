"""CelebA's 202,599 aligned faces: img_align_celeba.zip, read straight from the zip, from CelebA's Google Drive link
(checked against the known file before it is used), or the same images from Kaggle through kagglehub when Drive
refuses the download."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

from .sources import DatasetUnavailableError, ImageSource

DRIVE_ID = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"  # the zip that torchvision and most DCGAN tutorials download
ZIP_NAME = "img_align_celeba.zip"
ZIP_BYTES = 1_443_490_838
ZIP_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"
IMAGES = 202_599
# Kaggle's copy, pinned to one version; kagglehub (preinstalled on Colab) extracts it on the runtime's own disk.
KAGGLE_HANDLE = "jessicali9530/celeba-dataset/versions/2"
KAGGLE_FOLDER = "img_align_celeba/img_align_celeba"
# The prepared array's identity: the same images whichever way they came, since each way is checked.
FINGERPRINT = f"celeba img_align_celeba {IMAGES} images md5 {ZIP_MD5}"


def zip_path(root: Path) -> Path:
    """Where the CelebA zip is kept under a data root (upload it there by hand when every download fails)."""
    return root / "celeba" / ZIP_NAME


def local_path(root: Path) -> Path | None:
    """Where CelebA's images already lie under `root`: the zip, or a folder extracted by hand beside it; None when
    neither is there."""
    path = zip_path(root)
    extracted = path.parent / "img_align_celeba"
    return path if path.is_file() else extracted if extracted.is_dir() else None


def celeba_source(root: Path, download: bool, log: Callable[[str], None] = print) -> ImageSource:
    """CelebA's images: the zip under `root` (checked before it is opened; downloaded first when missing and
    `download`), a folder extracted by hand beside it, or Kaggle's copy when Google Drive refuses the download."""
    if (found := local_path(root)) is not None:
        if found.is_file():
            check_zip(found)
        return ImageSource(found)
    path = zip_path(root)
    if not download:
        raise DatasetUnavailableError(f"CelebA is not at {path} and download=False; {_by_hand(path)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download_from_drive(path, log)
    except DatasetUnavailableError as refused:
        log(f"{refused}; trying Kaggle's copy ({KAGGLE_HANDLE}) through kagglehub.")
        return _kaggle_source(path, refused)
    return ImageSource(path)


def _by_hand(path: Path) -> str:
    return (f"download {ZIP_NAME} by hand (https://drive.google.com/uc?id={DRIVE_ID} or the CelebA website) and "
            f"put it at {path}, then run again")


def check_zip(path: Path) -> None:
    """Refuse a file that is not the known img_align_celeba.zip (its size, then its MD5), saying what to do."""
    size = path.stat().st_size
    if size == ZIP_BYTES:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as file:
            while block := file.read(2**24):
                digest.update(block)
        if digest.hexdigest() == ZIP_MD5:
            return
        why = "its MD5 checksum differs"
    else:
        why = f"it holds {size:,} bytes, not {ZIP_BYTES:,}"
    raise DatasetUnavailableError(
        f"{path} is not the known {ZIP_NAME} ({why}): delete it and run again to download it, or train on it as a "
        f"folder of your own images with dataset 'folder:{path}'")


def _download_from_drive(path: Path, log: Callable[[str], None]) -> None:
    """Fetch the zip from Google Drive to a .part file, renamed only once it is the known file."""
    import gdown  # only CelebA needs it, and it pulls in requests and bs4

    part = path.with_name(path.name + ".part")
    try:
        log(f"Downloading {ZIP_NAME} ({ZIP_BYTES / 2**30:.1f} GiB) from Google Drive to {path} ...")
        gdown.download(id=DRIVE_ID, output=str(part), quiet=False)
        if not zipfile.is_zipfile(part):
            raise DatasetUnavailableError(_not_a_zip(part))
        check_zip(part)
    except DatasetUnavailableError:
        part.unlink(missing_ok=True)
        raise
    except Exception as error:  # gdown and requests raise many types; all mean "no zip"
        part.unlink(missing_ok=True)
        raise DatasetUnavailableError(f"the Google Drive download failed ({error})") from error
    part.rename(path)


def _not_a_zip(part: Path) -> str:
    with part.open("rb") as file:
        head = file.read(4096).lower()
    if b"<html" in head or b"<!doctype html" in head:
        return ("Google Drive returned an HTML page instead of the zip (usually 'quota exceeded': too many downloads "
                "of this file today)")
    return "the file Google Drive sent is not a zip"


def _kaggle_source(path: Path, refused: DatasetUnavailableError) -> ImageSource:
    """Kaggle's copy of the images, downloaded and extracted by kagglehub into its cache on this machine."""
    try:
        import kagglehub

        folder = Path(kagglehub.dataset_download(KAGGLE_HANDLE)) / KAGGLE_FOLDER
        source = ImageSource(folder)
    except Exception as error:  # no kagglehub, no network, no Kaggle credentials, an unexpected layout...
        raise DatasetUnavailableError(
            f"{refused}, and Kaggle's copy could not be fetched either ({type(error).__name__}: {error}). Upload "
            f"{ZIP_NAME} to {path} (the file from https://drive.google.com/uc?id={DRIVE_ID} or the CelebA website), "
            f"or sign in to Kaggle with kagglehub.login() and run again") from error
    if len(source) != IMAGES:
        raise DatasetUnavailableError(f"Kaggle's copy in {folder} holds {len(source):,} images, not {IMAGES:,}: "
                                      f"delete that folder and run again, or upload {ZIP_NAME} to {path}")
    return source
