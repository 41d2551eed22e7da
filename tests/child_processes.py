"""Child processes that the crash tests kill with SIGKILL mid-save: real code here, not code inside strings.

`python tests/child_processes.py hang-in-fsync RUN_DIR` saves the checkpoint of epoch 1, then starts epoch 2's
save, prints `SAVING` once its data is written and hangs in the fsync before the rename (test_checkpoint).
`python tests/child_processes.py train RUN_DIR PAUSE_AT CONFIG_YAML [--pause-in-epoch E]` trains in RUN_DIR, printing
`EPOCH n` after each epoch; the save of epoch PAUSE_AT prints `SAVING` after writing its temp file and hangs there, and
`--pause-in-epoch E` prints `PAUSED` halfway through epoch E and hangs there (test_faults); a trainer whose run was
taken over prints `STOPPED <message>` and exits with code 3.
`python tests/child_processes.py silent` prints nothing and hangs: the case a line reader's deadline must catch.
A hang is a read of stdin: it lasts until the parent sends a line (go on), kills the child or closes the pipe, never a
guessed number of seconds. Imported, `start` runs one of these, on a machine of its own name if asked (a UTS
namespace), under a reader whose waits have hard deadlines (benchmarks/child_run's `Child`), and `command` and
`environment` start either with this checkout's dcganlib, installed or not.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def on_host(host: str, argv: list[str]) -> list[str]:
    """argv run as if on the machine `host`: in a UTS namespace of its own, with that host name."""
    return ["unshare", "--uts", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]


def start(*args: str, host: str | None = None):
    """This file run as a child with args (on the machine `host` if given), its output read by a thread:
    `wait_for(line, timeout)` raises at the deadline even when the child prints nothing, and kills it."""
    if str(REPO) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
        sys.path.insert(0, str(REPO))
    from benchmarks.child_run import Child  # here: the child side of this file must not import the Trainer

    argv = command(*args)
    return Child(on_host(host, argv) if host else argv, cwd=REPO, env=environment())


def _hang() -> None:
    """Block until the parent sends a line (then return) or kills this process; a closed stdin ends it."""
    if not sys.stdin.readline():
        sys.exit("the parent closed stdin instead of killing this process")


# --- child side --------------------------------------------------------------------------------------------
def _tiny_state(epoch: int) -> dict:
    return {"epoch": epoch, "generator": {"w": torch.full((64,), float(epoch))}, "discriminator": {},
            "opt_g": {}, "opt_d": {}, "config": {}, "history": {"loss_g": [0.5] * epoch}}


def hang_in_fsync(run_dir: str) -> None:
    """Epoch 1 saved; epoch 2's data written to its temp file, then a hang where fsync would run."""
    checkpoint.save_checkpoint(_tiny_state(1), run_dir)

    def hang(fd: int) -> None:
        print("SAVING", flush=True)
        _hang()

    checkpoint.os.fsync = hang
    checkpoint.save_checkpoint(_tiny_state(2), run_dir)


def train(run_dir: str, pause_at: int, config_path: str, pause_in_epoch: int = 0) -> None:
    """Trains from the config; the save of epoch pause_at hangs after its temp file is written (-1: never), and
    halfway through epoch pause_in_epoch (1-based; 0: never) the training hangs."""
    from dcganlib.config import Config  # here, so that test_checkpoint's import of this file needs no Trainer
    from dcganlib.runs import RunTakenOverError
    from dcganlib.train import Trainer

    real_save = checkpoint.torch.save

    def save_then_hang(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("epoch") == pause_at:
            print("SAVING", flush=True)
            _hang()

    checkpoint.torch.save = save_then_hang
    trainer = Trainer(Config.load_yaml(config_path), run_dir, progress=False)
    step, halfway = trainer.train_step, len(trainer.loader) // 2

    def train_step(real: torch.Tensor) -> torch.Tensor:
        if trainer.epoch + 1 == pause_in_epoch and trainer.batch_in_epoch == halfway:
            print("PAUSED", flush=True)  # that half epoch is trained, and not saved
            _hang()
        return step(real)

    trainer.train_step = train_step
    try:
        trainer.fit(on_epoch_end=lambda t: print(f"EPOCH {t.epoch}", flush=True))
    except RunTakenOverError as stopped:
        print(f"STOPPED {stopped}", flush=True)
        sys.exit(3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    hang = commands.add_parser("hang-in-fsync", help="save epoch 1, then hang inside epoch 2's save")
    hang.add_argument("run_dir")
    training = commands.add_parser("train", help="train; hang in the save of one epoch")
    training.add_argument("run_dir")
    training.add_argument("pause_at", type=int, help="the epoch whose save hangs (-1: none)")
    training.add_argument("config", help="config YAML")
    training.add_argument("--pause-in-epoch", type=int, default=0, help="hang halfway through this epoch")
    commands.add_parser("silent", help="print nothing and hang")
    args = parser.parse_args(argv)
    if args.command == "hang-in-fsync":
        hang_in_fsync(args.run_dir)
    elif args.command == "silent":
        _hang()
    else:
        train(args.run_dir, args.pause_at, args.config, args.pause_in_epoch)


if __name__ == "__main__":
    main()
