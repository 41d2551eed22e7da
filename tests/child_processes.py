"""Child processes that the crash tests kill with SIGKILL: real code here and in tools/child_run.py, not code
inside strings.

`python tests/child_processes.py hang-in-fsync RUN_DIR` saves the checkpoint of epoch 1, then starts epoch 2's save,
prints `SAVING` once its data is written and hangs in the fsync before the rename (test_checkpoint).
`python tests/child_processes.py silent` prints nothing and hangs: the case a line reader's deadline must catch.
A hang is a read of stdin: it lasts until the parent kills the child or closes the pipe, never a guessed number of
seconds. Imported, `start` runs one of these and `train` runs tools/child_run.py (a Trainer that can pause, hang
in a save and be taken over), each on a machine of its own name if asked, under a reader whose waits have hard
deadlines (`Child`); `environment` gives them this checkout's dcganlib, installed or not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from repo_root import ROOT

from dcganlib import checkpoint


# --- parent side -------------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH, so the child imports its dcganlib."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def child(argv: list[str], host: str | None = None):
    """`argv` as a child process of this checkout (on the machine `host` if given), read by a `Child`."""
    from kit import on_host

    from tools.child_run import Child  # here: this file's child side must not import the Trainer

    return Child(on_host(host, argv) if host else argv, cwd=ROOT, env=environment())


def start(*args: str, host: str | None = None):
    """This file run as a child with args (on the machine `host` if given), its output read by a thread:
    `wait_for(line, timeout)` raises at the deadline even when the child prints nothing, and kills it."""
    return child([sys.executable, str(Path(__file__).resolve()), *args], host)


def train(config, run_dir: Path, *options: str, host: str | None = None):
    """tools/child_run.py training `config` in run_dir with its options (--pause-in-epoch E, --hang-in-save E),
    on the machine `host` if given; the config is saved beside the run dir."""
    config_path = config.save_yaml(run_dir.parent / f"{run_dir.name}.yaml")
    return child([sys.executable, str(ROOT / "tools" / "child_run.py"), str(config_path), str(run_dir),
                   *options], host)


def _hang() -> None:
    """Block until the parent kills this process (or closes stdin, which ends it with an error)."""
    sys.stdin.read()
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    hang = commands.add_parser("hang-in-fsync", help="save epoch 1, then hang inside epoch 2's save")
    hang.add_argument("run_dir")
    commands.add_parser("silent", help="print nothing and hang")
    args = parser.parse_args(argv)
    if args.command == "hang-in-fsync":
        hang_in_fsync(args.run_dir)
    else:
        _hang()


if __name__ == "__main__":
    main()
