"""Run directories: Drive on Colab (simulated with a fake google.colab), runs/ elsewhere, clear mount errors."""

import sys
import types

import pytest

from dcganlib import colab


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """Pretend to be on Colab: a google.colab module whose drive.mount creates MyDrive under tmp_path."""
    mounts = []

    def mount(mount_point):
        mounts.append(mount_point)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    google = types.ModuleType("google")
    google.__path__ = []
    google_colab = types.ModuleType("google.colab")
    google_colab.__path__ = []
    google_colab.__spec__ = types.SimpleNamespace(name="google.colab")
    google_colab.drive = types.SimpleNamespace(mount=mount)
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    monkeypatch.setattr(colab, "COLAB_LOCAL_RUNS", tmp_path / "content_runs")
    return mounts


def test_outside_colab_runs_go_to_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert not colab.in_colab()
    assert colab.run_directory("demo") == (tmp_path / "runs" / "demo").resolve()
    assert (tmp_path / "runs" / "demo").is_dir()


def test_base_wins_everywhere(tmp_path):
    assert colab.run_directory("x", base=tmp_path / "mine") == (tmp_path / "mine" / "x").resolve()


def test_on_colab_runs_go_to_drive(fake_colab, tmp_path):
    path = colab.run_directory("mnist")
    assert path == (tmp_path / "drive" / "MyDrive" / "dcgan" / "mnist").resolve()
    assert fake_colab == [str(tmp_path / "drive")]
    colab.run_directory("again")
    assert len(fake_colab) == 1  # already mounted: no second prompt


def test_on_colab_local_is_explicit(fake_colab, tmp_path):
    assert colab.run_directory("quick", local=True) == (tmp_path / "content_runs" / "quick").resolve()
    assert fake_colab == []


def test_failed_mount_says_how_to_fix(fake_colab, monkeypatch):
    def refuse(mount_point):
        raise ValueError("mount failed: credential propagation was unsuccessful")

    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", refuse)
    with pytest.raises(colab.DriveUnavailableError, match="accept the Drive permission.*local=True"):
        colab.run_directory("mnist")


@pytest.mark.parametrize("name", ["", "a/b", "../up"])
def test_run_name_must_be_a_folder_name(name):
    with pytest.raises(ValueError, match="plain folder name"):
        colab.run_directory(name)
