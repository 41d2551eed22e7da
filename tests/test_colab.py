"""Run directories: Drive on Colab (simulated with a fake google.colab), runs/ elsewhere, clear mount errors."""

import shutil
import sys
import types
import warnings

import pytest
import torch

from dcganlib import checkpoint, colab, load_generator
from dcganlib.config import Config
from dcganlib.runs import RunDir
from dcganlib.train import Trainer


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """Pretend to be on Colab: a google.colab module whose drive.mount creates MyDrive under tmp_path."""
    mounts = []

    def mount(mount_point):
        mounts.append(mount_point)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    def flush_and_unmount():
        mounts.append("flushed")
        shutil.rmtree(tmp_path / "drive")

    google = types.ModuleType("google")
    google.__path__ = []
    google_colab = types.ModuleType("google.colab")
    google_colab.__path__ = []
    google_colab.__spec__ = types.SimpleNamespace(name="google.colab")
    google_colab.drive = types.SimpleNamespace(mount=mount, flush_and_unmount=flush_and_unmount)
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    monkeypatch.setattr(colab, "COLAB_LOCAL_RUNS", tmp_path / "content_runs")
    monkeypatch.setattr(colab, "COLAB_TENSORBOARD", tmp_path / "content_tensorboard")
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


def test_drive_paths_mount_drive_first_in_a_fresh_runtime(fake_colab, tmp_path):
    run_dir = tmp_path / "drive" / "MyDrive" / "dcgan" / "mnist"
    assert colab.on_drive(run_dir) and not colab.on_drive(tmp_path / "elsewhere")
    assert colab.ensure_drive(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert fake_colab == []
    assert colab.ensure_drive(str(run_dir)) == run_dir
    assert fake_colab == [str(tmp_path / "drive")]
    colab.ensure_drive(run_dir)
    assert len(fake_colab) == 1


def test_drive_paths_outside_colab_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    assert colab.ensure_drive(tmp_path / "drive" / "MyDrive" / "x") == tmp_path / "drive" / "MyDrive" / "x"
    assert not (tmp_path / "drive").exists()


def test_a_new_runtime_reads_a_run_from_its_drive_path(fake_colab, tmp_path):
    """Notebook 05 on a fresh runtime: RUN_DIR points into Drive, and nothing has mounted it yet."""
    run_dir = colab.run_directory("walks")
    Trainer(Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=1000, sample_count=4, epochs=1),
            run_dir, progress=False, log=lambda message: None).fit()
    shutil.rmtree(tmp_path / "drive" / "MyDrive" / "dcgan" / "walks" / "samples")
    drive_copy = tmp_path / "drive_copy"
    shutil.move(tmp_path / "drive", drive_copy)  # the runtime ends: the mount point is gone, Drive keeps the files

    def remount(mount_point):
        fake_colab.append(mount_point)
        shutil.move(drive_copy, tmp_path / "drive")

    sys.modules["google.colab"].drive.mount = remount
    generator = load_generator(str(run_dir))
    assert generator.z_dim == 64
    assert fake_colab[-1] == str(tmp_path / "drive")


def test_trainer_mounts_drive_for_a_drive_run_dir(fake_colab, tmp_path):
    run_dir = tmp_path / "drive" / "MyDrive" / "dcgan" / "direct"
    Trainer(Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=1000, epochs=0), run_dir,
            progress=False, log=lambda message: None)
    assert fake_colab == [str(tmp_path / "drive")]
    assert (run_dir / "config.yaml").is_file()


def test_flush_drive_pushes_uploads_and_unmounts(fake_colab, tmp_path, capsys):
    assert colab.flush_drive() is False  # nothing mounted yet
    colab.mount_drive()
    assert colab.flush_drive() is True
    assert fake_colab[-1] == "flushed" and not (tmp_path / "drive").exists()
    assert "re-running the run-dir cell" in capsys.readouterr().out


def test_flush_drive_outside_colab_says_so(capsys):
    assert colab.flush_drive() is False
    assert "not mounted" in capsys.readouterr().out


def test_pruning_on_drive_says_where_the_files_went(fake_colab, monkeypatch):
    monkeypatch.setattr(checkpoint, "_trash_notice_given", False)
    run_dir = colab.run_directory("prune")
    state = {"epoch": 1, "generator": {"w": torch.zeros(1000)}, "discriminator": {}, "opt_g": {}, "opt_d": {},
             "config": {}, "history": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (1, 2, 3):
            checkpoint.save_checkpoint({**state, "epoch": epoch}, run_dir, keep=1)
    notices = [str(w.message) for w in caught if "Trash" in str(w.message)]
    assert len(notices) == 1 and colab.DRIVE_TRASH_URL in notices[0] and "keep_checkpoints" in notices[0]
    assert [p.name for p in RunDir(run_dir).checkpoint_dir.glob("*.pt")] == ["ckpt_epoch_0003.pt"]


def test_pruning_off_drive_is_silent(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "_trash_notice_given", False)
    state = {"epoch": 1, "generator": {}, "discriminator": {}, "opt_g": {}, "opt_d": {}, "config": {}, "history": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in (1, 2):
            checkpoint.save_checkpoint({**state, "epoch": epoch}, tmp_path, keep=1)


def interrupt(trainer):
    raise KeyboardInterrupt


@pytest.mark.parametrize("drive", [True, False])
def test_an_interrupted_run_says_what_it_kept_and_how_to_make_it_last(fake_colab, tmp_path, drive):
    run_dir = colab.run_directory("stop") if drive else tmp_path / "local"
    messages = []
    trainer = Trainer(Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=1000, epochs=3), run_dir,
                      progress=False, log=messages.append)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(on_epoch_end=interrupt)
    advice = messages[-1]
    assert f"Interrupted during epoch 2: the newest checkpoint is {run_dir / 'checkpoints' / 'ckpt_epoch_0001.pt'}" \
        in advice
    assert ("flush_drive()" in advice) is drive
