"""Image files decoded once into one uint8 array on disk, which any later process reads back instead of decoding.

    <data root>/prepared/
        folder-faces-1a2b3c4d-64px-rgb.npy     the images, (N, C, S, S) uint8: np.load reads it, memory-mapped or not
        folder-faces-1a2b3c4d-64px-rgb.json    its manifest: the source's fingerprint, size, channels, labels,
                                               class names, the format version and a checksum of the array

Preparing decodes every image on all cores (PIL with JPEG draft scaling, EXIF orientation applied, grey, CMYK,
palette and transparent images converted; unreadable files skipped and counted), writes the array to a temp file
and renames it into place, then writes the manifest the same way. Loading checks the manifest, the file's length and
its checksum: a changed source, another format version or a damaged file is rebuilt, never used. A data root on
Google Drive is prepared on the runtime's disk and then copied onto Drive whole (retried, storage.copy_atomic); if
Drive does not take it, this runtime trains from the local copy.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import multiprocessing
import os
import re
import shutil
import time
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import psutil
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from . import colab, storage
from .sources import DatasetUnavailableError, ImageFile, ImageSource

FORMAT_VERSION = 1
FOLDER = "prepared"
CHUNK = 256  # images a worker decodes per task: big enough to amortise the hand-over, small enough to stream
IMAGES_PER_WORKER = 256  # a second process pays only from this many images on
READ_BYTES = 64 * 2**20  # the array is read (and checksummed) in pieces of this size
T = TypeVar("T")


@dataclass
class PreparedImages:
    """A prepared data set: uint8 images (N, C, S, S), their int64 labels (or None) and the class names."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]


# --- decoding (runs in worker processes) ----------------------------------------------------------------------
def decode(data: bytes, image_size: int, channels: int) -> np.ndarray | None:
    """One image file's bytes as a (channels, image_size, image_size) uint8 array: upright as its EXIF tag says,
    its shorter side scaled to image_size and the centre cut out; None if it cannot be decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # A JPEG decodes straight at 1/2, 1/4 or 1/8 scale when that still covers image_size: far fewer pixels.
            image.draft(None, (image_size, image_size))
            upright = _flatten(ImageOps.exif_transpose(image), channels)
            square = ImageOps.fit(upright, (image_size, image_size), Image.Resampling.BILINEAR)
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError...)
        return None
    pixels = np.asarray(square, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _flatten(image: Image.Image, channels: int) -> Image.Image:
    """RGB or L; a transparent image is laid on white first, as a viewer shows it on a white page."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image.convert("RGB" if channels == 3 else "L")


def decode_batch(blobs: list[bytes | None], image_size: int, channels: int) -> tuple[np.ndarray, list[int]]:
    """The decoded images of `blobs` stacked in order, and the positions of those that could not be decoded."""
    decoded = [decode(blob, image_size, channels) if blob is not None else None for blob in blobs]
    good = [array for array in decoded if array is not None]
    stacked = np.stack(good) if good else np.empty((0, channels, image_size, image_size), np.uint8)
    return stacked, [index for index, array in enumerate(decoded) if array is None]


def _worker_count(images: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, images // IMAGES_PER_WORKER))


def _decoded_chunks(source: ImageSource, files: list[ImageFile], image_size: int, channels: int,
                    workers: int) -> Iterator[tuple[list[ImageFile], tuple[np.ndarray, list[int]]]]:
    """Each chunk of `files` with its decoded images, in order. This process reads the files (one reader suits a
    network drive), the workers decode them."""
    chunks = [files[start : start + CHUNK] for start in range(0, len(files), CHUNK)]
    if workers == 1:
        for chunk in chunks:
            yield chunk, decode_batch(source.read(chunk), image_size, channels)
        return
    # fork where there is one (Linux, as torch's DataLoader does): workers start at once, with nothing to import
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(decode_batch, source.read(chunk), image_size, channels)))
            if len(pending) > 2 * workers:  # a bounded queue: the bytes of at most a few chunks in memory
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


# --- the file on disk -------------------------------------------------------------------------------------------
def _header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def prepared_name(source: str, image_size: int, channels: int, labelled: bool) -> str:
    """The file name (without suffix) of a source's prepared array: "folder-faces-1a2b3c4d-64px-rgb"."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-")
    colour = "rgb" if channels == 3 else "grey"
    return f"{slug}-{image_size}px-{colour}" + ("-classes" if labelled else "")


class PreparedStore:
    """One prepared array and its manifest in `folder`, under `name`."""

    def __init__(self, folder: Path, name: str, log: Callable[[str], None] = print):
        self.array = folder / f"{name}.npy"
        self.manifest = folder / f"{name}.json"
        self.log = log

    def load(self, fingerprint: str, image_size: int, channels: int, labelled: bool,
             announce: bool = True) -> PreparedImages | None:
        """The prepared images when they exist, are whole and were made from this source at these settings; else
        None (saying why, when a file was there)."""
        started = time.monotonic()
        try:
            manifest = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            staged = self._staging()
            if staged is not self and staged.manifest.exists():  # Drive did not take it earlier in this runtime
                return staged.load(fingerprint, image_size, channels, labelled, announce)
            return None
        except (OSError, ValueError) as error:
            return self._unusable(f"its manifest cannot be read ({error})")
        expected = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "image_size": image_size,
                    "channels": channels, "labelled": labelled}
        changed = [key for key, value in expected.items() if manifest.get(key) != value]
        if changed:
            why = "the source changed" if changed == ["fingerprint"] else f"it differs in {', '.join(changed)}"
            return self._unusable(why)
        try:
            images, mapped = self._read_array(manifest)
        except (OSError, ValueError) as error:
            return self._unusable(str(error))
        labels = torch.tensor(manifest["labels"], dtype=torch.int64) if manifest["labels"] is not None else None
        if announce:
            self.log(f"Loaded prepared data {self.array} ({len(images):,} images, {image_size} px, "
                     f"{'RGB' if channels == 3 else 'grey'}{', memory-mapped' if mapped else ''}) in "
                     f"{time.monotonic() - started:.1f} s; it was prepared once in {manifest['seconds']:.1f} s.")
        return PreparedImages(images, labels, tuple(manifest["class_names"]))

    def _unusable(self, why: str) -> None:
        self.log(f"Prepared data {self.array} cannot be used ({why}): preparing it again.")
        return None

    def _read_array(self, manifest: dict) -> tuple[torch.Tensor, bool]:
        """The array, checked against the manifest's length and checksum, and whether it is memory-mapped: it is read
        into memory unless it would take more than half the memory available (CelebA at 128 px: 10 GB)."""
        shape = (manifest["count"], manifest["channels"], manifest["image_size"], manifest["image_size"])
        offset, length = len(_header(shape)), manifest["bytes"]
        size = self.array.stat().st_size
        if size != offset + length:
            raise ValueError(f"the file holds {size:,} bytes, not {offset + length:,}: it was cut short")
        mapped = length > psutil.virtual_memory().available // 2
        images = None if mapped else torch.empty(shape, dtype=torch.uint8)
        buffer = memoryview(bytearray(READ_BYTES) if mapped else images.numpy().reshape(-1))
        checksum = 0
        with self.array.open("rb") as file, tqdm(total=length, unit="B", unit_scale=True, leave=False,
                                                  desc="loading prepared data", disable=length < 2**28) as bar:
            if file.read(offset) != _header(shape):
                raise ValueError("its header does not match the manifest")
            for start in range(0, length, READ_BYTES):
                piece = buffer[: min(READ_BYTES, length - start)] if mapped else buffer[start : start + READ_BYTES]
                if file.readinto(piece) != len(piece):
                    raise ValueError("the file ended early")
                checksum = zlib.crc32(piece, checksum)
                bar.update(len(piece))
        if f"{checksum:08x}" != manifest["checksum"]:
            raise ValueError("its checksum does not match: the file is damaged")
        # Copy-on-write: a writable tensor whose pages come from the file as batches touch them.
        return (torch.from_numpy(np.load(self.array, mmap_mode="c")) if mapped else images), mapped

    def build(self, source: ImageSource, fingerprint: str, image_size: int, channels: int, labelled: bool,
              *, workers: int | None = None) -> PreparedImages:
        """Decode every image of `source` once and store the array and its manifest; returns the images."""
        files = [file for file in source.files if file.folder is not None] if labelled else source.files
        staged = self._staging()
        storage.ensure_folder(staged.array.parent)
        for folder in {staged.array.parent, self.array.parent}:  # a killed preparation's or copy's temp files
            storage.remove_stale_temp_files(folder)
        image_bytes = channels * image_size * image_size
        _check_space(staged.array.parent, len(_header((len(files), channels, image_size, image_size)))
                     + len(files) * image_bytes)
        workers = workers or _worker_count(len(files))
        self.log(f"Preparing {source.path} once: {len(files):,} images to {image_size} px "
                 f"{'RGB' if channels == 3 else 'grey'} on {workers} process{'es' if workers > 1 else ''}, "
                 f"into {self.array}.")
        started = time.monotonic()
        with contextlib.suppress(OSError):  # no manifest may vouch for an array it was not made for
            self.manifest.unlink(missing_ok=True)
        kept, checksum = _written(staged.array, lambda file: self._write(file, source, files, image_size, channels,
                                                                         workers))
        if skipped := [file.name for file in set(files) - set(kept)]:
            warnings.warn(f"skipped {len(skipped)} unreadable image files of {len(files)} in {source.path} "
                          f"({', '.join(sorted(skipped)[:3])}{', ...' if len(skipped) > 3 else ''})", stacklevel=3)
        class_names = source.class_names() if labelled else ()
        index = {name: label for label, name in enumerate(class_names)}
        manifest = {"format": FORMAT_VERSION, "source": str(source.path), "fingerprint": fingerprint,
                    "image_size": image_size, "channels": channels, "labelled": labelled, "count": len(kept),
                    "skipped": len(files) - len(kept), "bytes": len(kept) * image_bytes, "checksum": checksum,
                    "class_names": list(class_names),
                    "labels": [index[file.folder] for file in kept] if labelled else None,
                    "seconds": round(time.monotonic() - started, 1)}
        _written(staged.manifest, lambda file: file.write(json.dumps(manifest).encode()))
        home = self._publish(staged)
        self.log(f"Prepared {len(kept):,} images in {manifest['seconds']:.1f} s; later runs load them from "
                 f"{home.array}.")
        prepared = home.load(fingerprint, image_size, channels, labelled, announce=False)
        if prepared is None:
            raise DatasetUnavailableError(f"{home.array} could not be read back after it was written; check the "
                                          "disk, or set data_root to another folder")
        return prepared

    def _staging(self) -> PreparedStore:
        """Where the array is written first: on the runtime's disk when the data root lies on Drive, else here."""
        if not colab.on_drive(self.array):
            return self
        return PreparedStore(colab.pending_path(self.array.parent), self.array.stem, self.log)

    def _publish(self, staged: PreparedStore) -> PreparedStore:
        """Copy a staged array and then its manifest onto Drive, and return where the prepared data now is."""
        if staged is self:
            return self
        self.log(f"Copying the prepared data onto Drive ({staged.array.stat().st_size / 2**20:,.0f} MiB).")
        try:
            storage.copy_atomic(staged.array, self.array)  # the array first: no manifest vouches for a missing one
            storage.copy_atomic(staged.manifest, self.manifest)
        except OSError as error:
            self.log(f"Google Drive did not take the prepared data ({error.strerror or error}): this runtime trains "
                     f"from {staged.array}, and a later runtime prepares it again.")
            return staged
        staged.array.unlink()
        staged.manifest.unlink()
        return self

    def _write(self, file: BinaryIO, source: ImageSource, files: list[ImageFile], image_size: int, channels: int,
               workers: int) -> tuple[list[ImageFile], str]:
        """Decode `files` into the array `file`; returns the files kept (in order) and the checksum of its data."""
        planned = _header((len(files), channels, image_size, image_size))
        kept, checksum = [], 0
        with tqdm(total=len(files), unit="img", desc="preparing") as bar:
            file.write(planned)
            for chunk, (arrays, failed) in _decoded_chunks(source, files, image_size, channels, workers):
                data = arrays.tobytes()
                file.write(data)
                checksum = zlib.crc32(data, checksum)
                kept += [image for position, image in enumerate(chunk) if position not in failed]
                bar.update(len(chunk))
        if not kept:
            raise DatasetUnavailableError(f"none of the {len(files)} image files in {source.path} could be read; "
                                          "check that they are real images")
        final = _header((len(kept), channels, image_size, image_size))
        if len(final) != len(planned):  # np.lib.format pads every header to 64 bytes: always equal
            raise ValueError("the array header changed length")
        file.seek(0)
        file.write(final)
        return kept, f"{checksum:08x}"

def _check_space(folder: Path, needed: int) -> None:
    """Refuse at once when the folder's disk has too little room; a disk that reports no size at all (some network
    mounts) is left to the write itself."""
    usage = shutil.disk_usage(folder)
    free = usage.free
    if usage.total and free < needed:
        raise DatasetUnavailableError(f"the prepared images need {needed / 2**20:,.0f} MiB but {folder} has only "
                                      f"{free / 2**20:,.0f} MiB free: free some space, or set data_root elsewhere")


def _written(path: Path, write: Callable[[BinaryIO], T]) -> T:
    """`write` run on a temp file beside `path`, which is then synced and renamed into place (storage.write_atomic);
    returns what `write` returned. A failed write leaves neither a temp file nor a new `path`."""
    try:
        return storage.write_atomic(path, write)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DatasetUnavailableError(f"the disk holding {path.parent} is full: free some space, or set "
                                          "data_root to a folder with room for the prepared images") from error
        raise DatasetUnavailableError(f"cannot write {path} ({error.strerror or error}); check the folder, or set "
                                      "data_root to a writable one") from error
