"""Child processes that the crash tests kill with SIGKILL mid-save: real code here, not code inside strings.

`python tests/child_processes.py hang-in-fsync RUN_DIR` saves the checkpoint of epoch 1, then starts epoch 2's
save, prints `SAVING` once its data is written and hangs in the fsync before the rename (test_checkpoint).
`python tests/child_processes.py train RUN_DIR PAUSE_AT CONFIG_YAML` trains in RUN_DIR, printing `EPOCH n` after each
epoch; the save of epoch PAUSE_AT prints `SAVING` after writing its temp file and hangs there (test_faults).
Imported, `command` and `environment` start either with this checkout's dcganlib, installed or not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from dcganlib import checkpoint

REPO = Path(__file__).resolve().parents[1]


# --- parent side -------------------------------------------------------------------------------------------
def command(*args: str) -> list[str]:
    """The argv that runs this file as a script with args (a subcommand and its arguments)."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def environment() -> dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH, so the child imports its dcganlib."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


# --- child side --------------------------------------------------------------------------------------------
def _tiny_state(epoch: int) -> dict:
    return {"epoch": epoch, "generator": {"w": torch.full((64,), float(epoch))}, "discriminator": {},
            "opt_g": {}, "opt_d": {}, "config": {}, "history": {"loss_g": [0.5] * epoch}}


def hang_in_fsync(run_dir: str) -> None:
    """Epoch 1 saved; epoch 2's data written to its temp file, then a hang where fsync would run."""
    checkpoint.save_checkpoint(_tiny_state(1), run_dir)

    def hang(fd: int) -> None:
        print("SAVING", flush=True)
        time.sleep(30)

    checkpoint.os.fsync = hang
    checkpoint.save_checkpoint(_tiny_state(2), run_dir)


def train(run_dir: str, pause_at: int, config_path: str) -> None:
    """Trains from the config; the save of epoch pause_at hangs after its temp file is written (-1: never)."""
    from dcganlib.config import Config  # here, so that test_checkpoint's import of this file needs no Trainer
    from dcganlib.train import Trainer

    real_save = checkpoint.torch.save

    def save_then_hang(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("epoch") == pause_at:
            print("SAVING", flush=True)
            time.sleep(600)

    checkpoint.torch.save = save_then_hang
    trainer = Trainer(Config.load_yaml(config_path), run_dir, progress=False)
    trainer.fit(on_epoch_end=lambda t: print(f"EPOCH {t.epoch}", flush=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    hang = commands.add_parser("hang-in-fsync", help="save epoch 1, then hang inside epoch 2's save")
    hang.add_argument("run_dir")
    training = commands.add_parser("train", help="train; hang in the save of one epoch")
    training.add_argument("run_dir")
    training.add_argument("pause_at", type=int, help="the epoch whose save hangs (-1: none)")
    training.add_argument("config", help="config YAML")
    args = parser.parse_args(argv)
    if args.command == "hang-in-fsync":
        hang_in_fsync(args.run_dir)
    else:
        train(args.run_dir, args.pause_at, args.config)


if __name__ == "__main__":
    main()
