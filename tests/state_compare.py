"""Compare two checkpoint states key by key, tensors bit for bit: the test side of benchmarks/child_run.differences."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(REPO))
_child_run = importlib.import_module("benchmarks.child_run")
differences, count_tensors = _child_run.differences, _child_run.count_tensors

# Wall time is the one thing a resumed run cannot repeat.
WALL_TIME = ("history.epoch.seconds",)


def assert_same_state(a: dict, b: dict, *, skip: tuple[str, ...] = WALL_TIME) -> None:
    """Fail naming every dotted path (e.g. `rng.torch`, `ema_generator.net.0.0.weight`) where a and b differ."""
    found = differences(a, b, skip=skip)
    assert not found, "states differ at: " + ", ".join(found)


def state_keys(state: dict, keys) -> dict:
    """The entries of `state` named by `keys` (a checkpoint file adds version keys a Trainer state lacks)."""
    missing = sorted(set(keys) - state.keys())
    assert not missing, f"state lacks {missing}"
    return {key: state[key] for key in keys}


def train_batches(trainer, *, epoch: int, count: int) -> None:
    """`count` steps of `epoch` as fit() takes them, without the epoch's end: a run cut off mid-epoch."""
    batches = trainer.loader.epoch(epoch)
    for _ in range(count):
        trainer._pending.append(trainer.train_step(next(batches)))
        trainer.step += 1
        trainer.batch_in_epoch += 1
