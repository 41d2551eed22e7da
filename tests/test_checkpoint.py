"""Tests for dcganlib.checkpoint: atomic saves, safe loading, pruning and resume after crashes."""

from __future__ import annotations

import enum
import errno
import os
import re
import signal
from collections import namedtuple
from pathlib import Path

import child_processes
import pytest
import torch
from hostile import Hostile
from torch import nn

from dcganlib import checkpoint
from dcganlib.checkpoint import (
    FORMAT_VERSION,
    REQUIRED_KEYS,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_latest,
    save_atomic,
    save_checkpoint,
)
from dcganlib.runs import RunDir, checkpoint_name


def make_state(epoch: int, batch_in_epoch: int = 0) -> dict:
    torch.manual_seed(epoch)
    gen, disc = nn.Linear(4, 3), nn.Linear(3, 1)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    disc(gen(torch.randn(2, 4))).mean().backward()
    opt_g.step()  # so the optimizer state holds exp_avg tensors and a step count
    opt_d.step()
    state = {
        "epoch": epoch,
        "generator": gen.state_dict(),
        "discriminator": disc.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "config": {"dataset": "mnist", "lr": 2e-4, "betas": (0.5, 0.999), "seed": None, "amp": False},
        "history": {"loss_g": [1.5, 1.25], "loss_d": [0.75, 0.5], "fixed_noise": torch.randn(2, 4)},
    }
    if batch_in_epoch:
        state["batch_in_epoch"] = batch_in_epoch
    return state


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip(tmp_path):
    state = make_state(3)
    path = save_checkpoint(state, tmp_path)
    assert path == RunDir(tmp_path).checkpoint_dir / "ckpt_epoch_0003.pt"
    assert "format_version" not in state  # the caller's dict is not modified

    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION
    assert isinstance(loaded["library_version"], str)
    assert_same(state, {k: loaded[k] for k in state})
    assert loaded["opt_g"]["state"], "Adam state should have been saved"

    plain = torch.load(path, weights_only=True)
    assert_same(state["generator"], plain["generator"])

    # The restored optimizer state really works with a fresh optimizer.
    gen = nn.Linear(4, 3)
    gen.load_state_dict(loaded["generator"])
    torch.optim.Adam(gen.parameters()).load_state_dict(loaded["opt_g"])


def test_names_sort_chronologically():
    assert checkpoint_name(7) == "ckpt_epoch_0007.pt"
    assert checkpoint_name(7, 12) == "ckpt_epoch_0007_batch_000012.pt"
    order = [checkpoint_name(7), checkpoint_name(7, 12), checkpoint_name(7, 300), checkpoint_name(8)]
    assert sorted(order) == order
    with pytest.raises(ValueError):
        checkpoint_name(10_000)
    with pytest.raises(ValueError):
        checkpoint_name(-1)


def test_latest_prefers_newest_including_mid_epoch(tmp_path):
    save_checkpoint(make_state(7), tmp_path, keep=10)
    mid = save_checkpoint(make_state(7, batch_in_epoch=12), tmp_path, keep=10)
    assert mid.name == "ckpt_epoch_0007_batch_000012.pt"
    assert latest_checkpoint(tmp_path) == mid

    end = save_checkpoint(make_state(8), tmp_path, keep=10)
    assert latest_checkpoint(tmp_path) == end
    state, path = load_latest(tmp_path)
    assert path == end and state["epoch"] == 8 and "batch_in_epoch" not in state


def test_prune_keeps_newest_and_ignores_other_files(tmp_path):
    folder = RunDir(tmp_path).checkpoint_dir
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"best")
    (folder / "notes.txt").write_text("keep me")
    for epoch in range(1, 6):
        save_checkpoint(make_state(epoch), tmp_path, keep=2)
    assert files_in(folder) == ["best.pt", "ckpt_epoch_0004.pt", "ckpt_epoch_0005.pt", "notes.txt"]
    assert (folder / "best.pt").read_bytes() == b"best"

    # The file just written survives even when it is not the newest by name (a rewound run).
    save_checkpoint(make_state(2), tmp_path, keep=1)
    assert "ckpt_epoch_0002.pt" in files_in(folder)
    assert "ckpt_epoch_0005.pt" in files_in(folder)

    with pytest.raises(ValueError):
        save_checkpoint(make_state(9), tmp_path, keep=0)
    assert "ckpt_epoch_0009.pt" not in files_in(folder)


def test_save_rejects_missing_keys_and_non_plain_values(tmp_path):
    state = make_state(1)
    del state["history"]
    with pytest.raises(ValueError, match="history"):
        save_checkpoint(state, tmp_path)

    class Mode(enum.IntEnum):
        FAST = 1

    point = namedtuple("Point", "x y")
    for bad in (Path("/data"), Mode.FAST, point(1, 2)):
        state = make_state(1)
        state["config"]["extra"] = [bad]
        with pytest.raises(TypeError, match=re.escape("state['config']['extra'][0]")):
            save_checkpoint(state, tmp_path)
    assert latest_checkpoint(tmp_path) is None


def test_best_is_saved_like_every_checkpoint_and_never_pruned(tmp_path):
    regular = save_checkpoint(make_state(2), tmp_path, keep=1)
    best = save_checkpoint(make_state(1), tmp_path, keep=1, best=True)
    assert best == RunDir(tmp_path).best == RunDir(tmp_path).checkpoint_dir / "best.pt"
    loaded = load_checkpoint(best)
    assert loaded["format_version"] == FORMAT_VERSION and isinstance(loaded["library_version"], str)
    assert_same(loaded["generator"], make_state(1)["generator"])
    # best.pt is no resume candidate, and neither saving it nor later saves prune it.
    assert latest_checkpoint(tmp_path) == regular
    save_checkpoint(make_state(3), tmp_path, keep=1)
    assert files_in(RunDir(tmp_path).checkpoint_dir) == ["best.pt", "ckpt_epoch_0003.pt"]


def test_best_refuses_what_every_checkpoint_refuses_before_writing(tmp_path):
    state = make_state(1)
    state["config"]["root"] = Path("/data")
    with pytest.raises(TypeError, match=re.escape("state['config']['root']")):
        save_checkpoint(state, tmp_path, best=True)
    del state["history"]
    with pytest.raises(ValueError, match="history"):
        save_checkpoint(state, tmp_path, best=True)
    assert not RunDir(tmp_path).best.exists()


def _write_bad(path: Path, kind: str) -> None:
    good = path.with_name("good.bin")
    torch.save(make_state(2), good)
    data = good.read_bytes()
    good.unlink()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "not_a_dict":
        torch.save([1, 2, 3], path)
    elif kind == "missing_keys":
        torch.save({"epoch": 2, "generator": {}}, path)
    elif kind == "future_version":
        torch.save({**make_state(2), "format_version": FORMAT_VERSION + 1}, path)


BAD_KINDS = ["truncated", "zero_bytes", "random_bytes", "not_a_dict", "missing_keys", "future_version"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_newest_file_is_skipped_with_warning(tmp_path, kind):
    good = save_checkpoint(make_state(1), tmp_path)
    bad = RunDir(tmp_path).checkpoint_dir / checkpoint_name(2)
    _write_bad(bad, kind)

    with pytest.raises(CheckpointError, match=re.escape(bad.name)):
        load_checkpoint(bad)
    with pytest.warns(UserWarning, match=re.escape(bad.name)):
        assert latest_checkpoint(tmp_path) == good
    with pytest.warns(UserWarning, match=re.escape(bad.name)):
        state, path = load_latest(tmp_path)
    assert path == good and state["epoch"] == 1


def test_future_version_error_says_to_upgrade(tmp_path):
    bad = tmp_path / "future.pt"
    _write_bad(bad, "future_version")
    with pytest.raises(CheckpointError, match="Upgrade dcganlib"):
        load_checkpoint(bad)


def test_nothing_valid_or_nothing_there_gives_none(tmp_path, recwarn):
    assert latest_checkpoint(tmp_path / "missing") is None
    RunDir(tmp_path).checkpoint_dir.mkdir()
    assert latest_checkpoint(tmp_path) is None
    assert load_latest(tmp_path) is None
    assert not recwarn.list

    for epoch, kind in enumerate(["zero_bytes", "truncated"], start=1):
        _write_bad(RunDir(tmp_path).checkpoint_dir / checkpoint_name(epoch), kind)
    with pytest.warns(UserWarning) as caught:
        assert latest_checkpoint(tmp_path) is None
    assert {"ckpt_epoch_0001.pt", "ckpt_epoch_0002.pt"} <= {
        name for w in caught for name in re.findall(r"ckpt_epoch_\d+\.pt", str(w.message))
    }
    assert all(w.filename == __file__ for w in caught), "warnings should point at the caller"


def test_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickled_objects_are_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    hostile = RunDir(tmp_path).checkpoint_dir / checkpoint_name(5)
    hostile.parent.mkdir(parents=True)
    torch.save({**make_state(5), "config": {"payload": Hostile(marker)}}, hostile)

    with pytest.raises(CheckpointError, match=re.escape(hostile.name)):
        load_checkpoint(hostile)
    with pytest.warns(UserWarning, match=re.escape(hostile.name)):
        assert latest_checkpoint(tmp_path) is None
    assert not marker.exists()

    # Prove the file really is hostile: a full unpickle does run its code.
    torch.load(hostile, weights_only=False)
    assert marker.exists()


def test_no_space_left_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = save_checkpoint(make_state(1), tmp_path, keep=1)
    before = first.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial data" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"ckpt_epoch_0002\.pt.*space"):
        save_checkpoint(make_state(2), tmp_path, keep=1)  # keep=1: pruning must not run before success
    # Overwriting the same name fails the same way and leaves the old bytes in place.
    with pytest.raises(CheckpointError, match="ckpt_epoch_0001.pt"):
        save_checkpoint(make_state(1), tmp_path)
    monkeypatch.undo()

    assert files_in(RunDir(tmp_path).checkpoint_dir) == ["ckpt_epoch_0001.pt"]
    assert first.read_bytes() == before
    assert load_checkpoint(first)["epoch"] == 1


def test_interrupt_during_save_propagates_and_cleans_up(tmp_path, monkeypatch):
    def interrupted(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    target = tmp_path / "best.pt"
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"x": 1}, target)
    assert files_in(tmp_path) == []


def test_unwritable_folder_simulated(tmp_path, monkeypatch):
    first = save_checkpoint(make_state(1), tmp_path)
    real_open = Path.open

    def deny_temp_files(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny_temp_files)
    with pytest.raises(CheckpointError, match=r"ckpt_epoch_0002\.pt.*Permission denied.*writable"):
        save_checkpoint(make_state(2), tmp_path)
    monkeypatch.undo()
    assert files_in(RunDir(tmp_path).checkpoint_dir) == [first.name]


def test_unwritable_folder_real(tmp_path):
    save_checkpoint(make_state(1), tmp_path)
    folder = RunDir(tmp_path).checkpoint_dir
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("chmod does not stop this user (root or a filesystem without permissions)")
        with pytest.raises(CheckpointError, match="writable run directory"):
            save_checkpoint(make_state(2), tmp_path)
    finally:
        folder.chmod(0o755)
    assert files_in(folder) == ["ckpt_epoch_0001.pt"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_process_killed_mid_save_leaves_previous_checkpoint(tmp_path):
    # The child saves epoch 1, then hangs in epoch 2's save with its data written (tests/child_processes.py).
    child = child_processes.start("hang-in-fsync", str(tmp_path))
    try:
        child.wait_for("SAVING", timeout=120)  # raises at the deadline even if the child falls silent
    finally:
        child.kill()  # SIGKILL

    folder = RunDir(tmp_path).checkpoint_dir
    # The kill landed after the new data was written but before the rename.
    assert any(name.startswith(".ckpt_epoch_0002.pt.") and name.endswith(".tmp") for name in files_in(folder))
    assert not (folder / "ckpt_epoch_0002.pt").exists()

    assert latest_checkpoint(tmp_path) == folder / "ckpt_epoch_0001.pt"
    state, _ = load_latest(tmp_path)
    assert state["epoch"] == 1 and torch.equal(state["generator"]["w"], torch.full((64,), 1.0))

    # Resuming and saving again works despite the dead process's temp file.
    resumed = save_checkpoint({**state, "epoch": 2}, tmp_path)
    assert latest_checkpoint(tmp_path) == resumed
    assert set(REQUIRED_KEYS) <= load_checkpoint(resumed).keys()


def test_require_latest_says_to_train_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="no valid checkpoint in .*: train first"):
        checkpoint.require_latest(tmp_path)
