"""Tests for dcganlib.runs: the one description of a run folder's layout that every module asks for paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcganlib import colab, runs


def test_the_layout_of_a_run_folder(tmp_path):
    assert runs.config_path(tmp_path) == tmp_path / "config.yaml"
    assert runs.checkpoint_dir(tmp_path) == tmp_path / "checkpoints"
    assert runs.checkpoint_path(tmp_path, 7) == tmp_path / "checkpoints" / "ckpt_epoch_0007.pt"
    assert runs.checkpoint_path(tmp_path, 7, 123) == tmp_path / "checkpoints" / "ckpt_epoch_0007_batch_000123.pt"
    assert runs.best_path(tmp_path) == tmp_path / "checkpoints" / "best.pt"
    assert runs.frame_path(tmp_path, 7) == tmp_path / "samples" / "epoch_0007.png"
    assert runs.generator_path(tmp_path) == tmp_path / "generator.pt"
    report = (runs.grid_path, runs.losses_path, runs.d_outputs_path, runs.progress_gif_path)
    assert [f(tmp_path).name for f in report] == ["grid.png", "losses.png", "d_outputs.png", "progress.gif"]
    assert all(f(str(tmp_path)).parent == tmp_path for f in report)  # str paths work alike


def test_checkpoint_names_sort_chronologically_and_stay_in_range():
    names = [runs.checkpoint_name(7), runs.checkpoint_name(7, 12), runs.checkpoint_name(7, 300),
             runs.checkpoint_name(8), runs.checkpoint_name(9999, 999_999)]
    assert names == sorted(names)
    for epoch, batch in ((10_000, 0), (-1, 0), (1, 1_000_000), (1, -1)):
        with pytest.raises(ValueError, match="0 <= epoch <= 9999"):
            runs.checkpoint_name(epoch, batch)


def test_listings_are_oldest_first_and_skip_other_files(tmp_path):
    for path in (runs.checkpoint_path(tmp_path, 2), runs.checkpoint_path(tmp_path, 1, 5), runs.best_path(tmp_path),
                 runs.checkpoint_dir(tmp_path) / ".ckpt_epoch_0003.pt.tmp-42",
                 runs.frame_path(tmp_path, 10), runs.frame_path(tmp_path, 2), runs.samples_dir(tmp_path) / "x.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert [p.name for p in runs.checkpoints(tmp_path)] == ["ckpt_epoch_0001_batch_000005.pt", "ckpt_epoch_0002.pt"]
    assert [p.name for p in runs.frames(tmp_path)] == ["epoch_0002.png", "epoch_0010.png"]
    assert runs.checkpoints(tmp_path / "empty") == [] and runs.frames(tmp_path / "empty") == []


def test_tensorboard_logs_follow_colab(tmp_path, monkeypatch):
    assert runs.tensorboard_dir(tmp_path / "run") == tmp_path / "run" / "tensorboard"
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "COLAB_TENSORBOARD", tmp_path / "vm_tensorboard")
    assert runs.tensorboard_dir(tmp_path / "run") == tmp_path / "vm_tensorboard" / "run"


def test_open_run_dir_mounts_drive_only_for_a_drive_path_on_colab(tmp_path, monkeypatch):
    mounts = []
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    monkeypatch.setattr(colab, "mount_drive", lambda: mounts.append("mount"))
    assert runs.open_run_dir(str(tmp_path / "local")) == tmp_path / "local"
    assert mounts == []
    assert runs.open_run_dir(tmp_path / "drive" / "MyDrive" / "run") == tmp_path / "drive" / "MyDrive" / "run"
    assert mounts == ["mount"]


def test_shipped_assets_are_inside_the_package():
    assert runs.ASSETS == Path(runs.__file__).resolve().parent / "assets"
    assert {"mnist28_generator.pt", "mnist_classifier.pt"} <= {p.name for p in runs.ASSETS.iterdir()}
