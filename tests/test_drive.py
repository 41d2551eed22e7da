"""Google Drive failing under a run: never a write under an unmounted mount point, retries for a passing fault, the
runtime's disk while Drive stays away, and the files moved onto Drive when it is back (kit.FakeColab's Drive)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from kit import assert_same_state, make_trainer, tiny_config

from dcganlib import checkpoint, colab, flush_drive, storage
from dcganlib.runs import PENDING_NOTE, RunDir, RunDirUnwritableError, RunLock

CONFIG = tiny_config(batch_size=1000, epochs=3)  # five batches an epoch


@pytest.fixture
def quick_retries(monkeypatch) -> list[float]:
    """Retries a few milliseconds apart; returns the waits asked for."""
    waits = []
    monkeypatch.setattr(storage, "FIRST_BACKOFF_SECONDS", 0.001)
    monkeypatch.setattr(storage, "DRIVE_RETRY_SECONDS", 0.05)
    real_sleep = storage.time.sleep
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: (waits.append(seconds), real_sleep(seconds)))
    return waits


@pytest.fixture
def flaky_drive(fake_colab, monkeypatch):
    """A Drive whose next `left` file syncs fail with "Transport endpoint is not connected", as FUSE says on a drop."""
    failures = {"left": 0}
    real_fsync = os.fsync

    def fsync(descriptor):
        if failures["left"] and Path(f"/proc/self/fd/{descriptor}").readlink().is_relative_to(fake_colab.cloud):
            failures["left"] -= 1
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return real_fsync(descriptor)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    return failures


def straight_run(tmp_path) -> dict:
    """The last checkpoint of CONFIG trained without any fault, off Drive."""
    trainer = make_trainer(tmp_path / "straight", CONFIG)
    trainer.fit()
    return checkpoint.load_checkpoint(trainer.run.checkpoint(3))


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="mounts a tmpfs in a mount namespace of its own (Linux, as root)")
def test_drive_counts_as_mounted_only_on_a_real_mount(tmp_path):
    probe = textwrap.dedent(f"""
        import os, subprocess
        from pathlib import Path
        from dcganlib import colab
        colab.DRIVE_MOUNT_POINT = point = Path({str(tmp_path / "drive")!r})
        (point / "MyDrive").mkdir(parents=True)
        seen = [colab.drive_mounted()]
        subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], check=True)
        (point / "MyDrive").mkdir()
        seen.append(colab.drive_mounted())
        subprocess.run(["umount", str(point)], check=True)
        seen.append(colab.drive_mounted())
        print(seen)
    """)
    done = subprocess.run(["unshare", "--mount", sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[False, True, False]", done.stderr


def test_a_write_after_flush_drive_remounts_drive_first(fake_colab):
    run = RunDir(colab.run_directory("r"))
    flush_drive()
    checkpoint.save_checkpoint(tiny_state(1), run)
    assert (fake_colab.cloud / "dcgan" / "r" / "checkpoints" / "ckpt_epoch_0001.pt").is_file()
    assert [call for call in fake_colab.calls() if call.startswith("mount")] == [f"mount {fake_colab.drive}"] * 2


def test_nothing_is_created_under_an_unmounted_drive(fake_colab):
    target = colab.run_directory("r") / "deep" / "er" / "file.bin"
    fake_colab.drop_drive()
    with pytest.raises(storage.DriveAwayError, match="not mounted"):
        storage.write_atomic(target, lambda file: file.write(b"x"))
    with pytest.raises(storage.DriveAwayError):
        storage.ensure_folder(target.parent)
    assert fake_colab.files_under_mount_point() == []
    assert not (fake_colab.cloud / "dcgan" / "r" / "deep").exists()


def test_a_passing_drive_fault_is_retried_with_back_off(fake_colab, flaky_drive, quick_retries):
    run = RunDir(colab.run_directory("r"))
    flaky_drive["left"] = 2
    written = checkpoint.save_checkpoint(tiny_state(1), run)
    assert written == run.checkpoint(1) and checkpoint.load_checkpoint(written)["epoch"] == 1
    assert quick_retries == [0.001, 0.002] and not run.waiting()
    assert [path.name for path in run.checkpoint_dir.iterdir()] == ["ckpt_epoch_0001.pt"]  # no temp file left


def test_a_drive_that_keeps_failing_gives_up_after_the_retry_time(fake_colab, flaky_drive, quick_retries):
    target = colab.run_directory("r") / "file.bin"
    flaky_drive["left"] = 10**6
    failing = r"Google Drive kept failing for 0 s \(Transport endpoint is not connected\)"
    with pytest.raises(storage.DriveAwayError, match=failing):
        storage.write_atomic(target, lambda file: file.write(b"x"))
    assert 3 <= len(quick_retries) < 10 and not target.exists()


def test_off_drive_a_failed_write_is_not_retried(tmp_path, quick_retries):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OSError) as caught:
        storage.write_atomic(tmp_path / "blocker" / "file.bin", lambda file: file.write(b"x"))
    assert not isinstance(caught.value, storage.DriveAwayError) and quick_retries == []


def tiny_state(epoch: int) -> dict:
    return {"epoch": epoch, "generator": {"w": torch.zeros(2)}, "discriminator": {}, "opt_g": {}, "opt_d": {},
            "config": {}, "history": {}}


def drop_after_epoch(fake_colab, epoch: int):
    def callback(trainer):
        if trainer.epoch == epoch:
            fake_colab.drop_drive()
    return callback


def test_a_run_goes_on_while_drive_is_away_and_the_next_run_moves_its_files(fake_colab, tmp_path):
    expected = straight_run(tmp_path)
    run_dir = colab.run_directory("away")
    messages = []
    make_trainer(run_dir, CONFIG, log=messages.append).fit(on_epoch_end=drop_after_epoch(fake_colab, 1))
    pending = colab.pending_path(run_dir)
    away = [message for message in messages if "the run goes on with its files in" in message]
    assert len(away) == 1 and away[0].startswith("Google Drive is not mounted at ")
    assert f"files in {pending} on this runtime's disk" in away[0]
    assert fake_colab.files_under_mount_point() == []
    on_cloud = fake_colab.cloud / "dcgan" / "away"
    assert [path.name for path in (on_cloud / "checkpoints").iterdir()] == ["ckpt_epoch_0001.pt"]
    waiting = RunDir(run_dir).checkpoints()  # Drive's own are out of sight while it is away
    assert waiting == [pending / "checkpoints" / f"ckpt_epoch_000{n}.pt" for n in (2, 3)]

    fake_colab.bring_drive_back()
    messages.clear()
    resumed = make_trainer(run_dir, CONFIG, log=messages.append)
    assert any(message.startswith("Google Drive is back: moved ") for message in messages)
    assert f"Resumed from epoch 3 ({run_dir / 'checkpoints' / 'ckpt_epoch_0003.pt'}" in messages[-1]
    assert not pending.exists() and resumed.epoch == 3
    assert sorted(path.name for path in (on_cloud / "samples").iterdir()) == [f"epoch_000{n}.png" for n in (1, 2, 3)]
    assert_same_state(expected, checkpoint.load_checkpoint(on_cloud / "checkpoints" / "ckpt_epoch_0003.pt"))


def test_files_move_onto_drive_at_the_first_save_after_it_is_back(fake_colab, tmp_path):
    expected = straight_run(tmp_path)
    run_dir = colab.run_directory("back")

    def drop_then_return(trainer):
        if trainer.epoch == 1:
            fake_colab.drop_drive()
        elif trainer.epoch == 2:
            fake_colab.bring_drive_back()

    messages = []
    make_trainer(run_dir, CONFIG, log=messages.append).fit(on_epoch_end=drop_then_return)
    assert sum(message.startswith("Google Drive is back") for message in messages) == 1
    assert not colab.pending_path(run_dir).exists() and fake_colab.files_under_mount_point() == []
    checkpoints = fake_colab.cloud / "dcgan" / "back" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == [f"ckpt_epoch_000{n}.pt" for n in (1, 2, 3)]
    assert_same_state(expected, checkpoint.load_checkpoint(checkpoints / "ckpt_epoch_0003.pt"))


def test_with_neither_drive_nor_local_disk_the_run_stops_in_one_line_keeping_its_last_checkpoint(fake_colab):
    run_dir = colab.run_directory("stuck")
    colab.DRIVE_PENDING.parent.mkdir(parents=True, exist_ok=True)
    colab.DRIVE_PENDING.write_text("a file where the pending folder should be")
    trainer = make_trainer(run_dir, CONFIG)
    with pytest.raises(RunDirUnwritableError) as caught:
        trainer.fit(on_epoch_end=drop_after_epoch(fake_colab, 1))
    assert "\n" not in str(caught.value) and "this runtime's disk cannot take" in str(caught.value)
    first = fake_colab.cloud / "dcgan" / "stuck" / "checkpoints" / "ckpt_epoch_0001.pt"
    assert checkpoint.load_checkpoint(first)["epoch"] == 1
    assert fake_colab.files_under_mount_point() == []


def test_the_fit_cell_after_flush_drive_remounts_or_refuses(fake_colab):
    run_dir = colab.run_directory("again")
    trainer = make_trainer(run_dir, CONFIG)
    trainer.fit(1)
    flush_drive()
    trainer.fit(2)  # remounts
    assert (fake_colab.cloud / "dcgan" / "again" / "checkpoints" / "ckpt_epoch_0002.pt").is_file()
    flush_drive()
    fake_colab.refuse_mounts()
    with pytest.raises(RunDirUnwritableError, match="Google Drive is not mounted"):
        trainer.fit(3)
    assert fake_colab.files_under_mount_point() == [] and not colab.pending_path(run_dir).exists()


def test_files_of_a_run_that_went_on_elsewhere_are_set_aside_not_moved(fake_colab):
    run_dir = colab.run_directory("forked")
    make_trainer(run_dir, CONFIG).fit(on_epoch_end=drop_after_epoch(fake_colab, 1))
    # Meanwhile another runtime took the run over on Drive (from its epoch 1): its lock names another trainer.
    lock = fake_colab.cloud / "dcgan" / "forked" / "trainer.lock"
    lock.write_text('{"host": "colab-vm-other", "pid": 7, "token": "other", "released": true}')
    fake_colab.bring_drive_back()
    colab.mount_drive()
    found = checkpoint.load_latest(run_dir)  # as the CLI does before its Trainer: the waiting epoch 3
    messages = []
    trainer = make_trainer(run_dir, CONFIG, found=found, log=messages.append)
    aside = [message for message in messages if "not moved onto Drive" in message]
    assert len(aside) == 1 and "went on from another trainer" in aside[0]
    assert trainer.epoch == 1 and "Resumed from epoch 1 (" in messages[-1]
    on_drive = sorted(path.name for path in (fake_colab.cloud / "dcgan" / "forked" / "checkpoints").iterdir())
    assert on_drive == ["ckpt_epoch_0001.pt"] and not colab.pending_path(run_dir).exists()
    kept = colab.pending_path(run_dir).with_name(aside[0].split(" kept in ")[1].split(" and not")[0].rsplit("/")[-1])
    assert sorted(path.name for path in (kept / "checkpoints").iterdir()) == ["ckpt_epoch_0002.pt",
                                                                             "ckpt_epoch_0003.pt"]


def test_a_killed_trainers_lock_temp_file_is_cleared_by_the_next_trainer(tmp_path):
    run = RunDir(tmp_path)
    run.path.mkdir(exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".trainer.lock.{storage.host_name()}.{dead.stdout.strip()}.tmp"
    remote = tmp_path / ".trainer.lock.colab-vm-gone.12.tmp"
    mine = storage.temp_path(run.config)  # a write of this live process
    for path in (killed, remote, mine):
        path.write_text("{")
    (tmp_path / "trainer.lock").write_text('{"host": "colab-vm-gone", "pid": 12, "token": "t", "released": false}')
    RunLock(run, log=lambda message: None).acquire()
    assert not killed.exists() and not remote.exists() and mine.exists()


def test_a_pending_note_names_the_trainer_whose_files_wait(fake_colab):
    run_dir = colab.run_directory("note")
    trainer = make_trainer(run_dir, CONFIG)
    trainer.fit(on_epoch_end=drop_after_epoch(fake_colab, 2))
    assert (colab.pending_path(run_dir) / PENDING_NOTE).is_file()
    assert trainer.run.pending_owner() == trainer.run.writer is not None
