"""Checkpoint details that mutation testing found untested: devices, the default wording, stale temp files."""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pytest
import torch

from dcganlib import checkpoint
from dcganlib.checkpoint import CheckpointError
from dcganlib.runs import RunDir


def tiny_state(epoch: int) -> dict:
    return {"epoch": epoch, "generator": {"w": torch.full((4,), float(epoch))}, "discriminator": {}, "opt_g": {},
            "opt_d": {}, "config": {}, "history": {}}


def test_loads_go_to_the_device_asked_for(tmp_path):
    path = checkpoint.save_checkpoint(tiny_state(1), tmp_path)
    assert checkpoint.load_checkpoint(path)["generator"]["w"].device == torch.device("cpu")
    assert checkpoint.load_checkpoint(path, map_location="meta")["generator"]["w"].device == torch.device("meta")
    state, found = checkpoint.load_latest(tmp_path, map_location="meta")
    assert found == path and state["generator"]["w"].device == torch.device("meta")


def test_require_latest_returns_the_newest_checkpoint(tmp_path):
    checkpoint.save_checkpoint(tiny_state(1), tmp_path)
    newest = checkpoint.save_checkpoint(tiny_state(2), tmp_path)
    state, path = checkpoint.require_latest(tmp_path)
    assert path == newest and state["epoch"] == 2


def test_a_bad_checkpoint_says_checkpoint_and_how_to_go_on(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"Checkpoint {path} is unusable: it is damaged")
    assert message.endswith(". Delete or move it and resume from an earlier checkpoint, or start the run afresh.")


@pytest.fixture
def on_drive(fake_colab, monkeypatch) -> Path:
    """A run folder on a mounted Drive, and a trash notice that reports the bytes it is given."""
    monkeypatch.setattr(checkpoint.colab, "trash_notice", lambda pruned: f"pruned {pruned} bytes")
    monkeypatch.setattr(checkpoint, "_trash_notice_given", False)
    return checkpoint.colab.run_directory("pruned")


def test_pruning_on_drive_reports_the_bytes_deleted_once_per_process(on_drive):
    tmp_path = on_drive
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = checkpoint.save_checkpoint(tiny_state(1), tmp_path, keep=2)
        second = checkpoint.save_checkpoint(tiny_state(2), tmp_path, keep=2)
    assert caught == []  # nothing pruned yet: no notice
    sizes = first.stat().st_size + second.stat().st_size
    with pytest.warns(UserWarning, match=f"^pruned {sizes} bytes$"):
        checkpoint.save_checkpoint(tiny_state(3), tmp_path, keep=1)  # deletes epochs 1 and 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.save_checkpoint(tiny_state(4), tmp_path, keep=1)  # said once already


def test_an_undeletable_old_checkpoint_is_a_warning_and_a_vanished_one_is_skipped(tmp_path, monkeypatch):
    for epoch in (1, 2, 3):
        checkpoint.save_checkpoint(tiny_state(epoch), tmp_path, keep=10)
    folder = RunDir(tmp_path).checkpoint_dir
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name == "ckpt_epoch_0001.pt":
            real_unlink(self)
            raise FileNotFoundError(errno.ENOENT, "gone")  # removed meanwhile by someone else
        if self.name == "ckpt_epoch_0002.pt":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(checkpoint.colab, "on_drive", lambda path: False)
    expected = f"^Could not delete old checkpoint file {folder / 'ckpt_epoch_0002.pt'}: Permission denied$"
    with pytest.warns(UserWarning, match=expected):
        checkpoint.save_checkpoint(tiny_state(4), tmp_path, keep=1)
    assert sorted(p.name for p in folder.glob("ckpt_*.pt")) == ["ckpt_epoch_0002.pt", "ckpt_epoch_0004.pt"]


def test_the_folder_is_fsynced_after_the_rename_and_its_errors_are_ignored(tmp_path, monkeypatch):
    opened, synced = [], []
    real_open, real_fsync = checkpoint.os.open, checkpoint.os.fsync

    def open_(path, flags, *args):
        opened.append(str(path))
        return real_open(path, flags, *args)

    def fsync(fd):
        synced.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "open", open_)
    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    path = checkpoint.save_checkpoint(tiny_state(1), tmp_path)
    assert opened == [str(path.parent)] and len(synced) == 2  # the file's data, then the folder entry

    def refuse(path, flags, *args):
        raise OSError(errno.EINVAL, "directories cannot be opened here")

    monkeypatch.setattr(checkpoint.os, "open", refuse)
    assert checkpoint.save_checkpoint(tiny_state(2), tmp_path).is_file()



def message_of(error_type, call, *args, **kwargs) -> str:
    with pytest.raises(error_type) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_load_errors_word_for_word(tmp_path):
    missing = tmp_path / "missing.pt"
    assert message_of(CheckpointError, checkpoint.load_checkpoint, missing) == (
        f"Checkpoint {missing} is unusable: it does not exist. Check the path and that the drive is mounted.")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    assert message_of(CheckpointError, checkpoint.load_file, folder, required=(), what="Widget") == (
        f"Widget {folder} is unusable: it cannot be read (Is a directory). Check its permissions.")
    hostile = tmp_path / "hostile.pt"
    torch.save({"x": Path}, hostile)  # a class: unpickling would import and return it
    message = message_of(CheckpointError, checkpoint.load_file, hostile, required=(), what="Widget", advice="Do X.")
    assert message.startswith(f"Widget {hostile} is unusable: it is damaged or holds more than tensors and plain "
                              "data (Unsupported global: GLOBAL pathlib.Path")
    assert message.endswith(". Do X.")


def test_save_errors_word_for_word(tmp_path):
    state = tiny_state(1)
    assert message_of(ValueError, checkpoint.save_checkpoint, state, tmp_path, keep=0) == (
        "keep must be at least 1, got 0")
    assert message_of(ValueError, checkpoint.save_checkpoint, {"epoch": 1, "config": {}}, tmp_path) == (
        "checkpoint state lacks required keys: generator, discriminator, opt_g, opt_d, history")
    plain = "; checkpoints hold only tensors and int/float/str/bool/None in dicts, lists and tuples (convert it: " \
        "str(path), float(x), ...)."
    bad_value = {**state, "config": {"root": Path("data")}}
    assert message_of(TypeError, checkpoint.save_checkpoint, bad_value, tmp_path) == (
        f"state['config']['root'] is a {type(Path()).__module__}.{type(Path()).__qualname__}{plain}")
    bad_key = {**state, "config": {Path("data"): 1}}
    assert message_of(TypeError, checkpoint.save_checkpoint, bad_key, tmp_path) == (
        f"state['config'] key {Path('data')!r} is a {type(Path()).__module__}.{type(Path()).__qualname__}{plain}")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    folder = RunDir(blocker).checkpoint_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror
    assert message_of(CheckpointError, checkpoint.save_checkpoint, state, blocker) == (
        f"Could not write checkpoint {folder / 'ckpt_epoch_0001.pt'}: {reason}. Free some disk space or choose a "
        "writable run directory; any earlier file at that path is unchanged.")


def test_a_run_dir_whose_parents_do_not_exist_yet_is_created(tmp_path):
    path = checkpoint.save_checkpoint(tiny_state(1), tmp_path / "a" / "b")
    assert path.is_file() and path.parent == RunDir(tmp_path / "a" / "b").checkpoint_dir


def test_a_failed_write_says_the_old_file_is_unchanged(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    path = checkpoint.RunDir(tmp_path).checkpoint(1, 0)
    assert message_of(CheckpointError, checkpoint.save_checkpoint, tiny_state(1), tmp_path) == (
        f"Could not write checkpoint {path}: No space left on device. Free some disk space or choose a writable "
        "run directory; any earlier file at that path is unchanged.")


UPGRADE = f'Upgrade dcganlib (pip install -U "dcganlib @ git+{checkpoint.REPO_URL}") to load it.'


@pytest.mark.parametrize(("content", "reason", "advice"), [
    ([1, 2], "it holds a list, not a dict", "Make another."),
    ({"a": 1}, "it lacks the keys b, c", "Make another."),
    ({"b": 1, "c": 2, "format_version": 2, "library_version": "9.9"},
     "its format_version 2 (written by dcganlib 9.9) is beyond the 1 this dcganlib understands", UPGRADE),
    ({"b": 1, "c": 2, "format_version": 2},
     "its format_version 2 (written by dcganlib unknown) is beyond the 1 this dcganlib understands", UPGRADE),
    ({"b": 1, "c": 2, "format_version": "1"},
     "its format_version '1' (written by dcganlib unknown) is beyond the 1 this dcganlib understands", UPGRADE),
])
def test_each_refusal_names_the_file_what_is_wrong_and_what_to_do(tmp_path, content, reason, advice):
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load_file(path, required=("b", "c"), what="Thing", advice="Make another.")
    assert str(refused.value) == f"Thing {path} is unusable: {reason}. {advice}"


def test_a_truncated_file_is_refused_with_the_loaders_first_line(tmp_path):
    path = tmp_path / "thing.pt"
    torch.save({"b": 1}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load_file(path, required=("b",), what="Thing", advice="Make another.")
    message = str(refused.value)
    assert message.startswith(f"Thing {path} is unusable: it is empty, truncated or not a torch file (")
    assert message.endswith("). Make another.") and "(None)" not in message and "()" not in message
