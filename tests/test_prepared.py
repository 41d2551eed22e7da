"""Image folders and zips prepared once into one uint8 array (dcganlib.prepared, dcganlib.sources): what the pixels
become, when the array is reused and when it is rebuilt, and every bad input the issue names."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from kit import wait_until
from PIL import Image

from dcganlib import colab, prepared, storage
from dcganlib.data import BatchLoader, DatasetUnavailableError, load_dataset
from dcganlib.prepared import PreparedStore
from dcganlib.sources import ImageSource


def write_photos(folder: Path, count: int, size: tuple[int, int] = (40, 52), start: int = 0,
                 suffix: str = ".png") -> Path:
    """`count` images of one flat colour each (image i has red = i), named by number."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        Image.new("RGB", size, (i % 256, 128, 255 - i % 256)).save(folder / f"{i:05d}{suffix}")
    return folder


def zip_folder(folder: Path, archive: Path, top: str = "") -> Path:
    """The folder's files in a zip, under `top` (as a file manager's "Compress" puts them), with macOS debris."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, top + path.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/._00000.jpg", b"not an image")
        zf.writestr(top + "._00001.jpg", b"resource fork")
    return archive


def messages(capsys) -> str:
    return capsys.readouterr().out


def load(source: Path, root: Path, **kwargs):
    return load_dataset(f"folder:{source}", root=root, **{"image_size": 16, "channels": 3, **kwargs})


def only(root: Path, suffix: str) -> Path:
    (found,) = (root / "prepared").glob(f"*{suffix}")
    return found


# ---------------------------------------------------------------- reuse and rebuild


def test_a_folder_is_decoded_once_then_loaded_from_the_prepared_array(tmp_path, capsys, monkeypatch):
    photos = write_photos(tmp_path / "photos", 6)
    first = load(photos, tmp_path / "data")
    assert first.images.shape == (6, 3, 16, 16) and first.images.dtype == torch.uint8
    assert "Preparing " in messages(capsys)
    array = only(tmp_path / "data", ".npy")
    assert array.name.startswith("folder-photos-") and array.name.endswith("-16px-rgb.npy")
    assert torch.equal(torch.from_numpy(np.load(array)), first.images)  # a plain .npy anyone can open

    def no_decoding(*args):
        raise AssertionError("a prepared array must be loaded, not decoded again")

    monkeypatch.setattr(prepared, "decode_batch", no_decoding)
    again = load(photos, tmp_path / "data")
    assert torch.equal(again.images, first.images)
    assert "Loaded prepared data " in messages(capsys)


def test_each_size_channel_count_and_labelling_has_its_own_array(tmp_path):
    photos = write_photos(tmp_path / "photos" / "cats", 3).parent
    write_photos(photos / "dogs", 2)
    load(photos, tmp_path / "data")
    load(photos, tmp_path / "data", image_size=8)
    load(photos, tmp_path / "data", channels=1)
    labelled = load(photos, tmp_path / "data", labelled=True)
    names = sorted(path.name.split("-", 3)[-1] for path in (tmp_path / "data" / "prepared").glob("*.npy"))
    assert names == ["16px-grey.npy", "16px-rgb-classes.npy", "16px-rgb.npy", "8px-rgb.npy"]
    assert labelled.class_names == ("cats", "dogs") and labelled.labels.tolist() == [0, 0, 0, 1, 1]
    assert load(photos, tmp_path / "data", labelled=True).labels.tolist() == [0, 0, 0, 1, 1]  # kept in the manifest


def test_a_changed_source_is_prepared_again(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 4)
    assert len(load(photos, tmp_path / "data")) == 4
    write_photos(photos, 1, start=4)
    messages(capsys)
    assert len(load(photos, tmp_path / "data")) == 5
    assert "cannot be used (the source changed): preparing it again" in messages(capsys)


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda array, manifest: array.write_bytes(array.read_bytes()[:-100]), "cut short"),
    (lambda array, manifest: array.write_bytes(array.read_bytes()[:-1] + b"\x00"), "checksum does not match"),
    (lambda array, manifest: manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 0})),
     "differs in format"),
    (lambda array, manifest: manifest.write_text('{"format": 1, "fing'), "manifest cannot be read"),
    (lambda array, manifest: array.unlink(), "No such file"),
])
def test_a_damaged_or_outdated_prepared_array_is_rebuilt_never_used(tmp_path, capsys, damage, reason):
    photos = write_photos(tmp_path / "photos", 5)
    original = load(photos, tmp_path / "data").images
    damage(only(tmp_path / "data", ".npy"), only(tmp_path / "data", ".json"))
    messages(capsys)
    rebuilt = load(photos, tmp_path / "data").images
    text = messages(capsys)
    assert reason in text and "preparing it again" in text and "Preparing " in text
    assert torch.equal(rebuilt, original)


def test_a_missing_manifest_means_the_array_is_not_trusted(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 3)
    load(photos, tmp_path / "data")
    only(tmp_path / "data", ".json").unlink()
    messages(capsys)
    load(photos, tmp_path / "data")
    assert "Preparing " in messages(capsys)


# ---------------------------------------------------------------- pixels


def test_modes_are_converted_as_a_viewer_shows_them(tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(folder / "a_red.png")
    Image.new("L", (30, 20), 200).save(folder / "b_grey.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 0)).save(folder / "c_transparent.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(folder / "d_cmyk.jpg", quality=100)
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(folder / "e_palette.gif")
    rgb = load(folder, tmp_path / "data", image_size=8).images
    assert (rgb[0, 0] == 255).all() and (rgb[0, 1:] == 0).all()
    assert (rgb[1] == 200).all()  # grey, asked for in colour, repeats its channel
    assert (rgb[2] == 255).all()  # fully transparent: white, not the hidden blue
    assert (rgb[3, 0] > 240).all() and (rgb[3, 1:] < 15).all()  # CMYK (0, 255, 255, 0) is red
    assert (rgb[4, 1] == 255).all() and (rgb[4, 0] == 0).all()
    grey = load(folder, tmp_path / "data", image_size=8, channels=1).images
    assert grey.shape == (5, 1, 8, 8) and abs(int(grey[0, 0, 4, 4]) - 76) <= 1  # ITU-R 601 luma of pure red


def test_the_shorter_side_is_scaled_and_the_centre_kept(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, 25:35] = 255  # a bright stripe in the middle third
    Image.fromarray(pixels).save(folder / "wide.png")
    image = load(folder, tmp_path / "data", image_size=20).images[0]
    assert (image[:, :, 7:13] > 200).all() and (image[:, :, :3] < 30).all() and (image[:, :, -3:] < 30).all()


def phone_photo(path: Path, orientation: int) -> None:
    """A photo as a phone stores it: pixels in the sensor's landscape order, plus the EXIF tag that turns them
    upright; shown upright, it has a white band down its right-hand side."""
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:, -8:] = 255
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_phone_photos_keep_their_orientation(tmp_path, orientation):
    folder = tmp_path / "phone"
    folder.mkdir()
    phone_photo(folder / "IMG_0001.jpg", orientation)
    image = load(folder, tmp_path / "data", image_size=40).images[0].float().mean(0)  # 40 x 40 of the 60 x 40
    assert image[:, -6:].mean() > 200 and image[:, :30].mean() < 30


# ---------------------------------------------------------------- zips


def test_a_zip_is_read_like_the_folder_it_holds(tmp_path):
    photos = write_photos(tmp_path / "photos" / "cats", 3).parent
    write_photos(photos / "dogs", 2, start=3)
    archive = zip_folder(photos, tmp_path / "photos.zip", top="photos/")
    from_folder = load(photos, tmp_path / "data", labelled=True)
    from_zip = load(archive, tmp_path / "data", labelled=True)
    assert torch.equal(from_zip.images, from_folder.images) and torch.equal(from_zip.labels, from_folder.labels)
    assert from_zip.class_names == ("cats", "dogs")
    assert [file.name for file in ImageSource(archive).files][:2] == ["cats/00000.png", "cats/00001.png"]
    assert len(list((tmp_path / "data" / "prepared").glob("folder-photos-*-16px-rgb-classes.npy"))) == 2
    assert not (tmp_path / "photos.zip.d").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "data", "photos", "photos.zip"]  # never extracted


def test_a_damaged_zip_is_a_one_line_error(tmp_path):
    archive = zip_folder(write_photos(tmp_path / "photos", 3), tmp_path / "photos.zip")
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetUnavailableError, match=r"photos.zip is not a readable zip .*upload it again") as error:
        load(archive, tmp_path / "data")
    assert "\n" not in str(error.value)


def test_a_zip_member_with_a_bad_crc_is_skipped_like_a_corrupt_file(tmp_path):
    archive = zip_folder(write_photos(tmp_path / "photos", 4, suffix=".jpg"), tmp_path / "photos.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        member = zf.getinfo("00002.jpg")
    data[member.header_offset + 30 + len("00002.jpg") + 500] ^= 0xFF  # a byte inside the stored JPEG
    archive.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image files of 4 .*00002.jpg"):
        assert len(load(archive, tmp_path / "data")) == 3


# ---------------------------------------------------------------- bad input


def test_corrupt_files_among_good_ones_are_skipped_and_counted_once(tmp_path, recwarn):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.new("RGB", (40, 52), (60 * i, 128, 0)).save(photos / f"{i:05d}.jpg", quality=95)
    good = (photos / "00001.jpg").read_bytes()
    (photos / "00002.jpg").write_bytes(good[: len(good) // 2])  # a JPEG cut off in its data
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (photos / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image files of 6 in .*\(00002.jpg, broken.png\)"):
        images = load(photos, tmp_path / "data").images
    assert images.shape[0] == 4 and [round(red / 60) for red in images[:, 0, 8, 8].tolist()] == [0, 1, 3, 4]
    recwarn.clear()
    load(photos, tmp_path / "data")
    assert not [w for w in recwarn if "skipped" in str(w.message)]  # said once, when prepared


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), r"no images \(.png, .jpg.*\) found in .*empty; put the photos there"),
    (lambda p: None, r"image folder or zip .*empty does not exist; check the path"),
    (lambda p: (p.mkdir(), (p / "x.jpg").write_bytes(b"nope")), r"none of the 1 image files in .*empty could be read"),
])
def test_a_folder_without_images_is_a_one_line_error(tmp_path, make, message, recwarn):
    make(tmp_path / "empty")
    with pytest.raises(DatasetUnavailableError, match=message) as error:
        load(tmp_path / "empty", tmp_path / "data")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "data").rglob("*.npy"))


def test_a_disk_without_room_is_refused_before_decoding(tmp_path, monkeypatch):
    photos = write_photos(tmp_path / "photos", 3)
    monkeypatch.setattr(prepared.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, free=1000))
    with pytest.raises(DatasetUnavailableError, match=r"need 0 MiB but .*prepared has only 0 MiB free"):
        load(photos, tmp_path / "data")
    assert list((tmp_path / "data" / "prepared").iterdir()) == []


def test_a_disk_that_fills_up_while_preparing_leaves_nothing_half_written(tmp_path, monkeypatch):
    photos = write_photos(tmp_path / "photos", 600)
    chunks = prepared.decode_batch
    calls = []

    def fill_up(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return chunks(*args)

    monkeypatch.setattr(prepared, "decode_batch", fill_up)
    store = PreparedStore(tmp_path / "prepared", "photos")
    with pytest.raises(DatasetUnavailableError, match=r"the disk holding .*prepared is full: free some space"):
        store.build(ImageSource(photos), "fingerprint", 16, 3, False, workers=1)
    assert list((tmp_path / "prepared").iterdir()) == []


def test_serial_and_parallel_preparation_give_the_same_array(tmp_path):
    source = ImageSource(write_photos(tmp_path / "photos", 600, size=(30, 20)))
    serial = PreparedStore(tmp_path / "a", "photos", log=lambda m: None).build(source, "f", 16, 3, False, workers=1)
    parallel = PreparedStore(tmp_path / "b", "photos", log=lambda m: None).build(source, "f", 16, 3, False,
                                                                                  workers=2)
    assert torch.equal(serial.images, parallel.images)
    assert serial.images[:, 0, 0, 0].tolist() == [i % 256 for i in range(600)]  # in file order


KILLED_PREPARATION = """
import sys, time
from dcganlib.data import load_dataset
from dcganlib.sources import ImageSource
read = ImageSource.read
ImageSource.read = lambda self, files: (time.sleep(0.5), read(self, files))[1]
load_dataset("folder:" + sys.argv[1], root=sys.argv[2], image_size=16, channels=3)
"""


@pytest.mark.slow
def test_a_preparation_killed_midway_is_never_loaded_and_its_temp_file_goes(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 1200)
    prepared_dir = tmp_path / "data" / "prepared"
    child = subprocess.Popen([sys.executable, "-c", KILLED_PREPARATION, str(photos), str(tmp_path / "data")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def half_written() -> bool:
        temps = list(prepared_dir.glob(".*.tmp")) if prepared_dir.is_dir() else []
        return bool(temps) and temps[0].stat().st_size > 16 * 16 * 3 * 256

    wait_until(half_written, "a half-written prepared array", 120, gone=lambda: child.poll() and "the child ended")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not list(prepared_dir.glob("*.json")) and not list(prepared_dir.glob("*.npy"))
    messages(capsys)
    images = load(photos, tmp_path / "data").images
    assert "Preparing " in messages(capsys) and images.shape[0] == 1200
    assert not list(prepared_dir.glob(".*.tmp"))  # the dead process's temp file was removed


# ---------------------------------------------------------------- where the data live


def test_on_colab_prepared_data_go_to_drive_and_outlive_the_runtime(fake_colab, tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 4)
    load_dataset(f"folder:{photos}", image_size=16, channels=3)
    assert fake_colab.calls() == ["mount " + str(fake_colab.drive)]
    assert len(list((fake_colab.cloud / "dcgan" / "data" / "prepared").glob("*.npy"))) == 1
    fake_colab.end_runtime()
    messages(capsys)
    load_dataset(f"folder:{photos}", image_size=16, channels=3)
    assert "Loaded prepared data " in messages(capsys)
    assert colab.data_directory() == fake_colab.my_drive / "dcgan" / "data"


def test_on_drive_the_array_is_written_on_the_runtimes_disk_then_copied_whole(fake_colab, tmp_path, capsys,
                                                                            monkeypatch):
    photos = write_photos(tmp_path / "photos", 4)
    copies, copy = [], storage.copy_atomic
    monkeypatch.setattr(storage, "copy_atomic", lambda source, target: (copies.append((source, target)),
                                                                        copy(source, target))[1])
    load_dataset(f"folder:{photos}", image_size=16, channels=3)
    staged, on_drive = zip(*copies, strict=True)
    assert all(not colab.on_drive(path) and not path.exists() for path in staged)  # moved: the local copy is gone
    assert [path.suffix for path in on_drive] == [".npy", ".json"] and all(colab.on_drive(p) for p in on_drive)
    assert "Copying the prepared data onto Drive" in messages(capsys)


def test_when_drive_does_not_take_the_array_this_runtime_trains_from_its_local_copy(fake_colab, tmp_path, capsys,
                                                                                     monkeypatch):
    photos = write_photos(tmp_path / "photos", 4)
    decode = prepared.decode_batch
    monkeypatch.setattr(prepared, "decode_batch", lambda *args: (fake_colab.drop_drive(), decode(*args))[1])
    images = load(photos, fake_colab.my_drive / "dcgan" / "data").images
    out = messages(capsys)
    assert "Google Drive did not take the prepared data (Google Drive is not mounted at " in out
    assert "this runtime trains from " + str(colab.DRIVE_PENDING) in out and images.shape == (4, 3, 16, 16)
    assert fake_colab.files_under_mount_point() == []
    fake_colab.bring_drive_back()
    load(photos, fake_colab.my_drive / "dcgan" / "data")  # later in this runtime: the local copy, not decoded
    assert "Loaded prepared data " + str(colab.DRIVE_PENDING) in messages(capsys)


def test_batches_come_from_the_prepared_array(tmp_path):
    images = load(write_photos(tmp_path / "photos", 10), tmp_path / "data")
    batches = list(BatchLoader(images, 4, seed=1).epoch(0))
    assert [tuple(batch.shape) for batch in batches] == [(4, 3, 16, 16)] * 2
    red = sorted(round((batch[i, 0, 0, 0].item() + 1) * 127.5) for batch in batches for i in range(4))
    assert len(set(red)) == 8 and set(red) <= set(range(10))
    with pytest.raises(TypeError, match="BatchLoader batches a TensorImages"):
        BatchLoader(list(images), 2)


def test_an_array_larger_than_half_the_free_memory_is_memory_mapped_and_still_checked(tmp_path, monkeypatch, capsys):
    photos = write_photos(tmp_path / "photos", 5)
    in_memory = load(photos, tmp_path / "data").images
    monkeypatch.setattr(prepared.psutil, "virtual_memory", lambda: SimpleNamespace(available=1000))
    messages(capsys)
    mapped = load(photos, tmp_path / "data")
    assert "RGB, memory-mapped) in " in messages(capsys) and torch.equal(mapped.images, in_memory)
    assert len(list(BatchLoader(mapped, 2).epoch(0))) == 2
    array = only(tmp_path / "data", ".npy")
    array.write_bytes(array.read_bytes()[:-1] + b"\x01")
    assert torch.equal(load(photos, tmp_path / "data").images, in_memory)
    assert "checksum does not match" in messages(capsys)
