"""The CLI: train, re-run to resume, sample/gif/plot/export, and one clear line for bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from dcganlib import checkpoint
from dcganlib.cli import build_parser, main
from dcganlib.config import Config

REPO = Path(__file__).resolve().parents[1]


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
])
def test_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_bad_choice_is_argparse_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path), "--preset", "biggan"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'biggan'" in capsys.readouterr().err


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("train", "sample", "gif", "plot", "export"):
        assert command in text
    result = subprocess.run([sys.executable, "-m", "dcganlib", "train", "--help"], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert "--checkpoint-minutes" in result.stdout and "--fresh" in result.stdout
