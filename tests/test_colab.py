"""Run directories: Drive on Colab (the google.colab stand-in of kit.FakeColab), runs/ elsewhere, clear mount errors."""

import warnings

import pytest
import torch
from kit import make_trainer, tiny_config

from dcganlib import checkpoint, colab, load_generator
from dcganlib.runs import RunDir


def mounted(fake_colab) -> list[str]:
    return [call for call in fake_colab.calls() if call.startswith("mount")]


def test_outside_colab_runs_go_to_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert not colab.in_colab()
    assert colab.run_directory("demo") == (tmp_path / "runs" / "demo").resolve()
    assert (tmp_path / "runs" / "demo").is_dir()


def test_base_wins_everywhere(tmp_path):
    assert colab.run_directory("x", base=tmp_path / "mine") == (tmp_path / "mine" / "x").resolve()


def test_on_colab_runs_go_to_drive(fake_colab):
    assert colab.in_colab()
    path = colab.run_directory("mnist")
    assert path == fake_colab.my_drive / "dcgan" / "mnist" and (fake_colab.cloud / "dcgan" / "mnist").is_dir()
    assert mounted(fake_colab) == [f"mount {fake_colab.drive}"]
    colab.run_directory("again")
    assert len(mounted(fake_colab)) == 1  # already mounted: no second prompt


def test_on_colab_local_is_explicit(fake_colab):
    assert colab.run_directory("quick", local=True) == fake_colab.content / "runs" / "quick"
    assert fake_colab.calls() == []


def test_failed_mount_says_how_to_fix(fake_colab):
    fake_colab.refuse_mounts()
    with pytest.raises(colab.DriveUnavailableError,
                       match="credential propagation.*accept the Drive permission.*time-out.*local=True"):
        colab.run_directory("mnist")


@pytest.mark.parametrize("name", ["", "a/b", "../up"])
def test_run_name_must_be_a_folder_name(name):
    with pytest.raises(ValueError, match="plain folder name"):
        colab.run_directory(name)


def test_drive_paths_mount_drive_first_in_a_fresh_runtime(fake_colab, tmp_path):
    run_dir = fake_colab.my_drive / "dcgan" / "mnist"
    assert colab.on_drive(run_dir) and not colab.on_drive(tmp_path / "elsewhere")
    assert colab.ensure_drive(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert fake_colab.calls() == []
    assert colab.ensure_drive(str(run_dir)) == run_dir
    assert mounted(fake_colab) == [f"mount {fake_colab.drive}"]
    colab.ensure_drive(run_dir)
    assert len(mounted(fake_colab)) == 1


def test_drive_paths_outside_colab_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(colab, "DRIVE_MOUNT_POINT", tmp_path / "drive")
    assert colab.ensure_drive(tmp_path / "drive" / "MyDrive" / "x") == tmp_path / "drive" / "MyDrive" / "x"
    assert not (tmp_path / "drive").exists()


def test_a_new_runtime_reads_a_run_from_its_drive_path(fake_colab):
    """Notebook 05 on a fresh runtime: RUN_DIR points into Drive, and nothing has mounted it yet."""
    run_dir = colab.run_directory("walks")
    make_trainer(run_dir, tiny_config(batch_size=1000, sample_count=4, epochs=1)).fit()
    fake_colab.end_runtime()  # the mount point is gone, Drive keeps the files
    assert not run_dir.exists()
    generator = load_generator(str(run_dir))
    assert generator.z_dim == 64
    assert mounted(fake_colab)[-1] == f"mount {fake_colab.drive}" and len(mounted(fake_colab)) == 2


def test_trainer_mounts_drive_for_a_drive_run_dir(fake_colab):
    run_dir = fake_colab.my_drive / "dcgan" / "direct"
    make_trainer(run_dir, tiny_config(batch_size=1000, epochs=0))
    assert mounted(fake_colab) == [f"mount {fake_colab.drive}"]
    assert (run_dir / "config.yaml").is_file()


def test_flush_drive_pushes_uploads_and_unmounts(fake_colab, capsys):
    assert colab.flush_drive() is False  # nothing mounted yet
    colab.mount_drive()
    assert colab.flush_drive() is True
    assert fake_colab.calls()[-1] == "flush_and_unmount" and not fake_colab.drive.exists()
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
    trainer = make_trainer(run_dir, tiny_config(batch_size=1000, epochs=3), log=messages.append)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(on_epoch_end=interrupt)
    advice = messages[-1]
    assert f"Interrupted during epoch 2: the newest checkpoint is {run_dir / 'checkpoints' / 'ckpt_epoch_0001.pt'}" \
        in advice
    assert ("flush_drive()" in advice) is drive
