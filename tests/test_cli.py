"""The CLI: train, re-run to resume, sample/gif/plot/export, and one clear line for bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from repo_root import ROOT

from dcganlib import checkpoint, cli, data
from dcganlib.cli import build_parser, main
from dcganlib.config import Config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    tiny = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=16)
    config_path = tiny.save_yaml(run_dir.parent / "tiny.yaml")
    assert main(["train", "--config", str(config_path), "--epochs", "1", "--run-dir", str(run_dir)]) == 0
    return run_dir, config_path


def test_train_writes_checkpoint_samples_and_report(trained, capsys):
    run_dir, _ = trained
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))["epoch"] == 1
    for name in ("grid.png", "losses.png", "d_outputs.png", "progress.gif", "samples/epoch_0001.png", "config.yaml"):
        assert (run_dir / name).is_file(), name


def test_rerun_resumes(trained, capsys):
    run_dir, config_path = trained
    assert main(["train", "--config", str(config_path), "--epochs", "2", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Resumed from epoch 1" in out and "Trained to epoch 2" in out
    assert main(["train", "--epochs", "2", "--run-dir", str(run_dir)]) == 0  # no config: the checkpoint's
    assert "Already trained 2 epochs" in capsys.readouterr().out


def test_sample_gif_plot_export(trained, tmp_path, capsys):
    run_dir, _ = trained
    assert main(["sample", "--run-dir", str(run_dir), "--n", "16", "--out", str(tmp_path / "grid.png")]) == 0
    assert main(["gif", "--run-dir", str(run_dir), "--out", str(tmp_path / "p.gif")]) == 0
    assert main(["plot", "--run-dir", str(run_dir), "--out-dir", str(tmp_path)]) == 0
    assert main(["export", "--run-dir", str(run_dir), "--out", str(tmp_path / "g.pt")]) == 0
    for name in ("grid.png", "p.gif", "losses.png", "d_outputs.png", "g.pt"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--run-dir", "{tmp}", "--lr", "-1"], "error: lr: -1.0 must be a positive number"),
    (["train", "--run-dir", "{tmp}", "--dataset", "imagenet"], "error: dataset: unknown 'imagenet'"),
    (["train", "--run-dir", "{tmp}", "--dataset", "folder:{tmp}/none", "--epochs", "1"], "error: "),
    (["sample", "--run-dir", "{tmp}/nothing"], "error: "),
    (["gif", "--run-dir", "{tmp}"], "error: "),
    (["train", "--run-dir", "{tmp}/a_file/run", "--epochs", "1"], "error: cannot write to the run dir"),
    (["sample", "--run-dir", "{tmp}", "--n", "0"], "error: --n must be a whole number of at least 1, got 0"),
    (["sample", "--run-dir", "{tmp}", "--nrow", "-2"], "error: --nrow must be a whole number of at least 1, got -2"),
    (["gif", "--run-dir", "{tmp}", "--fps", "0"], "error: --fps must be a whole number of at least 1, got 0"),
])
def test_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def one_error_line(capsys) -> str:
    """stderr, checked to be the CLI's single `error: ...` line."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "error: device 'cuda' asked for, but torch sees no GPU; drop --device to use the CPU, or on Colab "
             "choose Runtime ▸ Change runtime type ▸ T4 GPU\n"),
    ("gpu", "error: unknown device 'gpu'; use cpu, cuda, cuda:N (N a GPU index such as 0) or mps"),
])
def test_unusable_device_is_one_line_before_anything_is_written(device, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--device", device, "--epochs", "1"]) == 2
    assert one_error_line(capsys).startswith(message)
    assert not run_dir.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("lr: 0.1\n  beta1: 0.5\n", "is not valid YAML (mapping values are not allowed here at line 2, column 8); "
                                "fix that line"),
    ("- lr\n- 0.1\n", "holds a list, expected a mapping of config fields; write one `field: value` per line"),
    ("", "holds nothing, expected a mapping"),
    (None, "does not exist; check the path, or leave out --config to start from a preset"),
])
def test_bad_config_file_is_one_line_naming_it(text, message, tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--config", str(path)]) == 2
    assert one_error_line(capsys).startswith(f"error: config file {path} {message}")


def test_batch_larger_than_the_data_set_is_one_line(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path), "--batch-size", "6000", "--epochs", "1"]) == 2
    assert one_error_line(capsys).startswith(
        "error: batch_size: 6000 is more than the 5000 images in mnist-5k; choose a batch size of at most 5000")


def test_zero_epochs_on_a_new_run_is_not_an_error(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path), "--epochs", "0"]) == 0
    assert "raise epochs to train more" in capsys.readouterr().out


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken_trainer(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(cli, "Trainer", broken_trainer)
    with pytest.raises(ValueError, match="a bug"):
        main(["train", "--run-dir", str(tmp_path)])


def test_colour_data_on_the_default_preset_fails_before_any_download(tmp_path, monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("CIFAR-10 must not be loaded")

    monkeypatch.setattr(data.datasets, "CIFAR10", no_download)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--run-dir", "run", "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset cifar10 is in colour but preset mnist28 is grayscale (channels 1)")
    assert "cifar32" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


class Stop(Exception):
    """Raised by the stand-in Trainer once it has seen the config the CLI built."""


@pytest.fixture
def built_configs(monkeypatch) -> list:
    """The configs `train` hands to the Trainer; the stand-in Trainer stops the command there."""
    seen = []

    def fake_trainer(config, *args, **kwargs):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(cli, "Trainer", fake_trainer)
    return seen


def test_channels_flag_is_the_opt_in(tmp_path, built_configs):
    for argv in (["--channels", "1"], ["--channels", "3"], ["--preset", "cifar32"]):
        with pytest.raises(Stop):
            main(["train", "--run-dir", str(tmp_path), "--dataset", "cifar10", *argv])
    assert [(c.preset, c.dataset, c.channels) for c in built_configs] == [
        ("mnist28", "cifar10", 1), ("mnist28", "cifar10", 3), ("cifar32", "cifar10", 3)]


def test_bad_choice_is_argparse_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path), "--preset", "biggan"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'biggan'" in capsys.readouterr().err


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("train", "sample", "gif", "plot", "export"):
        assert command in text
    result = subprocess.run([sys.executable, "-m", "dcganlib", "train", "--help"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert "--checkpoint-minutes" in result.stdout and "--fresh" in result.stdout


# Every train option that sets a Config field, with today's type and choices: the fields' metadata makes them.
CONFIG_FLAGS = {"dataset": ("mnist", str), "channels": ("3", int), "epochs": ("2", int), "batch_size": ("64", int),
                "seed": ("7", int), "lr": ("1e-4", float), "loss": ("hinge", str), "precision": ("fp32", str),
                "ema_decay": ("0", float), "checkpoint_minutes": ("0.5", float)}


def test_config_flags_come_from_the_config_fields(tmp_path, built_configs, capsys):
    argv = [f"--{name.replace('_', '-')}={value}" for name, (value, _) in CONFIG_FLAGS.items()]
    with pytest.raises(Stop):
        main(["train", "--run-dir", str(tmp_path), *argv])
    given = {name: getattr(built_configs[0], name) for name in CONFIG_FLAGS}
    assert given == {name: kind(value) for name, (value, kind) in CONFIG_FLAGS.items()}
    assert {name: type(value) for name, value in given.items()} == {n: k for n, (_, k) in CONFIG_FLAGS.items()}
    for flag, bad in (("--channels", "2"), ("--loss", "lsgan"), ("--precision", "int8"), ("--epochs", "2.5")):
        with pytest.raises(SystemExit):
            main(["train", "--run-dir", str(tmp_path), flag, bad])
        assert "invalid" in capsys.readouterr().err


def test_a_resumed_train_loads_its_checkpoint_once(trained, tmp_path, monkeypatch, capsys):
    _, config_path = trained
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--epochs", "1", "--run-dir", str(run_dir)]) == 0
    loads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    capsys.readouterr()
    # A bare re-run: the CLI reads the checkpoint's config and hands the loaded state to the Trainer.
    assert main(["train", "--epochs", "2", "--run-dir", str(run_dir)]) == 0
    assert [Path(path).name for path in loads] == ["ckpt_epoch_0001.pt"]
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert out.rstrip().endswith(str(checkpoint.latest_checkpoint(run_dir)))  # the report names the newest one
