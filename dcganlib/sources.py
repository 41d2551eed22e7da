"""Where a data set's image files come from: a folder or a zip of them, listed once, read file by file.

No image library here: a source lists its images (names, sizes, times), tells their classes and reads their bytes;
`prepared` decodes them.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class DatasetUnavailableError(RuntimeError):
    """A data set cannot be loaded; the message says why and what to do by hand."""


@dataclass(frozen=True)
class ImageFile:
    """One image of a source: its path inside the source (posix), its size in bytes and a stamp of its contents
    (a folder's modification time in whole seconds, a zip's CRC-32)."""

    name: str
    size: int
    stamp: int

    @property
    def folder(self) -> str | None:
        """The first-level sub-folder it lies in (its class), or None when it lies at the top."""
        parts = PurePosixPath(self.name).parts
        return parts[0] if len(parts) > 1 else None


def _is_image(name: str) -> bool:
    """True for a posix path inside a source that names an image; macOS puts "._photo.jpg" resource forks and a
    __MACOSX/ folder into the zips it makes, which are not images."""
    path = "/" + name
    return (path[path.rfind("."):].lower() in IMAGE_EXTENSIONS and "/." not in path
            and not path.startswith("/__MACOSX/"))


class ImageSource:
    """The images under a folder or inside a zip, at any depth, in sorted order.

    The first level of sub-folders are the classes (torchvision's ImageFolder convention). A zip whose members all
    lie in one top folder (as "Compress" in a file manager makes it) is read as that folder.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().absolute()
        if self.path.is_dir():
            self.is_zip = False
            files = self._folder_files()
        elif self.path.is_file():
            self.is_zip = True
            files = self._zip_files()
        else:
            raise DatasetUnavailableError(f"image folder or zip {self.path} does not exist; check the path "
                                          "(on Colab, mount Drive first and look under /content/drive/MyDrive)")
        self.files: list[ImageFile] = sorted(files, key=lambda file: file.name)
        if not self.files:
            raise DatasetUnavailableError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {self.path}; put the photos there, in "
                "sub-folders or not")

    def _folder_files(self) -> list[ImageFile]:
        files, folders, start = [], [str(self.path)], len(str(self.path)) + 1
        while folders:  # os.scandir: one stat per image and none per other file (a large folder on Drive is slow)
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_dir():
                        folders.append(entry.path)
                    elif _is_image(name := entry.path[start:].replace(os.sep, "/")) and entry.is_file():
                        stat = entry.stat()
                        files.append(ImageFile(name, stat.st_size, int(stat.st_mtime)))
        return files

    def _zip_files(self) -> list[ImageFile]:
        try:
            # Kept open for reading: opening parses the whole directory again (CelebA's: 202,599 entries).
            self._archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DatasetUnavailableError(f"{self.path} is not a readable zip ({error}); copy or upload it again, "
                                          "or point to a folder of images") from error
        members = [info for info in self._archive.infolist() if not info.is_dir() and _is_image(info.filename)]
        self._prefix = _common_folder([info.filename for info in members])
        return [ImageFile(info.filename.removeprefix(self._prefix), info.file_size, info.CRC) for info in members]

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """A digest of every image's name, size and stamp: it changes when an image is added, removed or changed."""
        digest = hashlib.sha256(b"zip" if self.is_zip else b"folder")
        for file in self.files:
            digest.update(f"{file.name}\t{file.size}\t{file.stamp}\n".encode())
        return digest.hexdigest()

    def class_names(self) -> tuple[str, ...]:
        """The classes, the sub-folders that hold images, in sorted order; () when every image lies at the top."""
        return tuple(sorted({file.folder for file in self.files} - {None}))

    def read(self, files: list[ImageFile]) -> list[bytes | None]:
        """The bytes of each file in `files`, None for one that cannot be read."""
        if not self.is_zip:
            return [_read_or_none(Path.read_bytes, self.path / file.name) for file in files]
        return [_read_or_none(self._archive.read, self._prefix + file.name) for file in files]


def _read_or_none(read, where) -> bytes | None:
    try:
        return read(where)
    except (OSError, zipfile.BadZipFile, EOFError):  # a vanished file, a bad CRC, a zip cut short
        return None


def _common_folder(names: list[str]) -> str:
    """The one top folder ("photos/") that every name lies in, or "" when there is none."""
    tops = {PurePosixPath(name).parts[0] for name in names}
    if len(tops) == 1 and all(len(PurePosixPath(name).parts) > 1 for name in names):
        return tops.pop() + "/"
    return ""
