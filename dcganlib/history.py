"""A run's history: losses and D's outputs per batch and per epoch, with the epochs' times and scores.

Its `data` is the plain dict that checkpoints store and the plots read:
    {"batch": {"step": [...], "loss_d": [...], "loss_g": [...], "d_real": [...], "d_fake": [...]},
     "epoch": {"epoch": [...], "loss_d": [...], ..., "seconds": [...], "fid": [...], ...}}
with one epoch column per score the run measures (scores.METRICS' columns: fid, kid, precision, recall), None in the
epochs it was not measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed

STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")
LABELS = {"loss_d": "loss_D", "loss_g": "loss_G", "d_real": "D(x)", "d_fake": "D(G(z))"}  # the progress bar's
SYNC_EVERY = 10  # batches whose stats wait on the device: reading them back makes the CPU wait for the GPU


NOT_SCORES = ("epoch", *STAT_NAMES, "seconds")  # the epoch columns every history has; the others are scores


def empty_history(scores: tuple[str, ...] = ("fid",)) -> dict:
    """The history of a run that has not trained yet and measures the columns `scores`."""
    return {"batch": {"step": [], **{name: [] for name in STAT_NAMES}},
            "epoch": {"epoch": [], **{name: [] for name in STAT_NAMES}, "seconds": [], **{name: [] for name in scores}}}


def _append(batch_history: dict, pending: list[torch.Tensor], last_step: int) -> None:
    """Append per-batch stats still on the device (one sync for many batches); the newest was step `last_step`."""
    if not pending:
        return
    values = torch.stack(pending).cpu().tolist()
    first_step = last_step - len(values) + 1
    for offset, row in enumerate(values):
        batch_history["step"].append(first_step + offset)
        for name, value in zip(STAT_NAMES, row, strict=True):
            batch_history[name].append(value)


class History:
    """Collects each batch's (loss_d, loss_g, D(x), D(G(z))) without waiting for the device, averaged over ranks."""

    def __init__(self, group: distributed.Group = distributed.SINGLE, data: dict | None = None,
                 scores: tuple[str, ...] = ("fid",)):
        self.group = group
        self.data = data if data is not None else empty_history(scores)
        self._pending: list[torch.Tensor] = []  # stats of the newest batches, still on the device
        self._bar: tqdm | None = None  # the epoch's progress bar while `progress` runs

    def add(self, stats: torch.Tensor, step: int) -> None:
        """Keep a batch's stats, taken at `step`; every SYNC_EVERY batches they move into `data`."""
        self._pending.append(stats)
        if len(self._pending) >= SYNC_EVERY:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Move the pending stats into `data` (one sync for many batches; the newest was taken at `step`), and
        show the newest on the progress bar."""
        if self.group.active and self._pending:
            self._pending = list(distributed.mean(torch.stack(self._pending), self.group))
        _append(self.data["batch"], self._pending, step)
        self._pending.clear()
        if self._bar is not None:
            batch = self.data["batch"]
            self._bar.set_postfix({LABELS[name]: f"{batch[name][-1]:.3f}" for name in STAT_NAMES if batch[name]},
                                  refresh=False)

    @contextlib.contextmanager
    def progress(self, batches: Iterable, *, total: int, done: int, title: str, shown: bool) -> Iterator[Iterable]:
        """`batches` under a progress bar (when `shown`) that shows the newest stats; at the end the pending stats
        move into `data` (call `flush(step)` before leaving) and the bar draws its final line."""
        self._bar = tqdm(batches, total=total, initial=done, desc=title, disable=not shown, leave=True,
                         dynamic_ncols=True)
        try:
            yield self._bar
        finally:
            self._bar.close()
            self._bar = None

    def so_far(self, step: int) -> dict:
        """A copy of `data` that holds every batch up to `step`, the pending ones included; changes nothing."""
        copied = {level: {name: list(values) for name, values in columns.items()}
                  for level, columns in self.data.items()}
        _append(copied["batch"], self._pending, step)
        return copied

    def end_epoch(self, epoch: int, batches: int, seconds: float, scores: dict[str, float] | None = None) -> None:
        """Record epoch `epoch`: the means of its `batches` batches' stats, its wall time and its `scores` (None in
        every score column when it was not measured; a score new to this history gets a column of its own)."""
        epochs, batch_history, scores = self.data["epoch"], self.data["batch"], scores or {}
        epochs["epoch"].append(epoch)
        for name in STAT_NAMES:
            epochs[name].append(float(np.mean(batch_history[name][-batches:])))
        epochs["seconds"].append(seconds)
        for name in scores:
            epochs.setdefault(name, [None] * (len(epochs["epoch"]) - 1))
        for name in [name for name in epochs if name not in NOT_SCORES]:
            epochs[name].append(scores.get(name))


class TensorBoardLog:
    """Each epoch's stats and scores as TensorBoard scalars in `log_dir` (needs the tensorboard package)."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard") from error
        self.writer = SummaryWriter(str(log_dir))

    def write_epoch(self, history: History) -> None:
        """The newest epoch of `history`, its measured values only."""
        epochs = history.data["epoch"]
        for name in [name for name in epochs if name not in ("epoch", "seconds")]:
            if epochs[name][-1] is not None:
                self.writer.add_scalar(name, epochs[name][-1], epochs["epoch"][-1])
        self.writer.flush()
