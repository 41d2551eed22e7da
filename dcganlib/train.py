"""The DCGAN training loop: per-epoch checkpoints, exact resume, progress bars and sample frames.

`Trainer.fit` is one loop over epochs and batches; its side jobs are small objects of their own: the run folder
and its lock (`runs`), the step (`step`), the random streams (`seeds`), the EMA generator (`ema`), the history
(`history`) and the metrics with best.pt (`evaluation`); what a checkpoint holds is `checkpoint.TrainingState`.
Under `torchrun --nproc-per-node N` the same loop trains data-parallel (see `distributed`): every process takes its
share of each batch, rank 0 alone writes files, and a checkpoint holds every rank's RNG states.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

from . import checkpoint, distributed, runs
from .build import build_loader, build_networks, build_optimizers, fixed_samples, training_forwards
from .config import Config
from .devices import autocast_dtype, pick_device
from .evaluation import Evaluation
from .history import SYNC_EVERY, History, TensorBoardLog
from .images import write_grid
from .models import generate
from .seeds import TrainingStreams
from .step import TrainingStep

RUN_DIR_ERRORS = (runs.RunDirInUseError, runs.RunTakenOverError, runs.RunDirUnwritableError)


def _quiet(message: str) -> None:
    """The log of every rank but rank 0: one process speaks for the group."""


class Trainer:
    """Trains a DCGAN in `run_dir`, resuming from its newest checkpoint unless `resume=False`.

    `found` is that checkpoint as (state, path) when the caller has already loaded it, so it is read once.
    Under torchrun each process builds its own Trainer; together they train one run (rank 0 writes the files).
    The run dir is locked from here until `fit` returns (`runs.RunLock`): a second trainer on this machine is a
    `runs.RunDirInUseError`; a trainer on another machine takes the run over, and this one stops with a
    `runs.RunTakenOverError` before its next write.
    """

    def __init__(self, config: Config | None, run_dir, *, device=None, resume: bool = True,
                 progress: bool = True, log: Callable[[str], None] = print,
                 found: tuple[dict, Path] | None = None):
        # First: an unusable device fails before the run dir is touched.
        self.device, self.group = distributed.join(pick_device(device))
        self.log = log if self.group.is_main else _quiet
        self.run = runs.RunDir.open(run_dir)
        self.run.log = self.log
        self.progress = progress and self.group.is_main
        self._lock = runs.RunLock(self.run, log=self.log)
        self._on_main(self._lock.acquire)
        if found is not None and not found[1].exists():  # it waited for Drive, and taking the lock moved it
            found = None
        try:
            self.config, found = checkpoint.starting_point(self.run, config, resume, found)
            self._on_main(lambda: self.run.write_config(self.config))  # fails now, not after an epoch of training
            self._build()
            self._restore_or_start(found)
        except BaseException:
            self._lock.release()
            raise
        weakref.finalize(self, self._lock.release)  # a Trainer dropped without fit() frees the run dir too

    # --- construction -----------------------------------------------------------------------------------
    def _build(self) -> None:
        """Networks, optimizers, random streams and batches, in an order that makes a config give the same run,
        bit for bit, every time: the initial weights are the run's first draw from the global RNG."""
        cfg, device = self.config, self.device
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.generator, self.discriminator, self.ema = build_networks(cfg, device, self.group, memory_format)
        self.opt_g, self.opt_d, self.scaler = build_optimizers(cfg, self.generator, self.discriminator, device,
                                                               self.amp_dtype)
        self.streams = TrainingStreams(cfg.seed, device, self.group, cfg.seeding)
        self.fixed_noise, self.fixed_labels, self.grid_columns = fixed_samples(cfg, device)
        forwards = training_forwards(cfg, self.generator, self.discriminator, device, self.group)
        self._step = TrainingStep(cfg, self.generator, self.discriminator, self.opt_g, self.opt_d, self.scaler,
                                  forwards, self.streams, self.ema, self.group, self.amp_dtype)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotuned convolutions: a run's shapes never change
        self.loader = build_loader(cfg, device, self.group, memory_format)
        self.class_names = self.loader.dataset.class_names if cfg.num_classes else ()
        self.evaluation = Evaluation(cfg, device, self.loader)
        if self.group.is_main:
            self.evaluation.prepare()
        self._tensorboard = TensorBoardLog(self.run.tensorboard) if cfg.tensorboard and self.group.is_main else None

    def _restore_or_start(self, found: tuple[dict, Path] | None) -> None:
        """Continue from the checkpoint `found`, or start at step 0; says which."""
        self.epoch = self.batch_in_epoch = self.step = 0
        self._history = History(self.group, scores=self.config.score_columns)
        self.newest_checkpoint = None if found is None else found[1]  # the checkpoint holding the state trained to
        if found is None:
            self.log(f"Starting fresh in {self.run.path}.")
            return
        state, path = found
        self.load_state_dict(state)
        where = f", batch {self.batch_in_epoch} of epoch {self.epoch + 1}" if self.batch_in_epoch else ""
        self.log(f"Resumed from epoch {self.epoch}{where} ({path}, step {self.step}).")

    # --- the run dir's lock -------------------------------------------------------------------------------
    def ensure_run_held(self) -> None:
        """Before a write: raise runs.RunTakenOverError on every rank if another trainer has taken the run over."""
        self._on_main(self._lock.ensure_held)

    def _on_main(self, action: Callable[[], object]) -> None:
        """`action` on rank 0 for its whole group: a refused lock, or a run dir it cannot write, stops every rank."""
        distributed.on_main(action, self.group, RUN_DIR_ERRORS)

    # --- training -----------------------------------------------------------------------------------------
    def fit(self, epochs: int | None = None, *, on_epoch_end: Callable[[Trainer], None] | None = None) -> dict:
        """Train until `epochs` (default config.epochs) epochs are complete; returns the history."""
        target = self.config.epochs if epochs is None else epochs
        if self.epoch >= target:
            self.log(f"Already trained {self.epoch} epochs (target {target}); raise epochs to train more.")
        self._on_main(self._lock.acquire)
        try:
            while self.epoch < target:
                seconds = self._train_epoch(target)
                scores = self._end_epoch(seconds)
                self._save_epoch(scores)
                if on_epoch_end is not None:
                    on_epoch_end(self)
        except KeyboardInterrupt:
            self.log(checkpoint.interrupted_advice(self.run, self.epoch + 1))
            raise
        finally:
            self._lock.release()
        return self.history

    def _train_epoch(self, target: int) -> float:
        """Train the rest of the current epoch batch by batch, saving inside it when checkpoint_minutes say so;
        returns the seconds it took."""
        self.generator.train()
        self.discriminator.train()
        started = last_save = time.monotonic()
        batches = self.loader.epoch(self.epoch, start_batch=self.batch_in_epoch, recycle=True)  # each used up at once
        with self._history.progress(batches, total=len(self.loader), done=self.batch_in_epoch,
                                    title=f"epoch {self.epoch + 1}/{target}", shown=self.progress) as bar:
            for real in bar:
                self.train_batch(real)
                if self._mid_epoch_save_due(last_save):
                    self._history.flush(self.step)  # state_dict() would read them too: moved first, read once
                    self.save_checkpoint()
                    last_save = time.monotonic()
            self._history.flush(self.step)
        return time.monotonic() - started

    def train_batch(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> None:
        """One step on a batch as the loader yields it (images, or images and labels for a conditional run),
        counted and recorded in the history as `fit` does."""
        real, labels = batch if self.config.num_classes else (batch, None)
        stats = self.train_step(real, labels)
        self.step += 1
        self.batch_in_epoch += 1
        self._history.add(stats, self.step)

    def train_step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One D update then one G update (step.TrainingStep); returns (loss_d, loss_g, D(x), D(G(z))) on the
        device."""
        return self._step(real, labels, self.step)

    def _mid_epoch_save_due(self, last_save: float) -> bool:
        """checkpoint_minutes have passed since the last save, and the epoch's own checkpoint is not next."""
        minutes = self.config.checkpoint_minutes
        if not minutes or (self.group.active and self.batch_in_epoch % SYNC_EVERY):
            return False  # under torchrun the ranks agree every SYNC_EVERY batches, on rank 0's clock
        due = time.monotonic() - last_save >= 60 * minutes and self.batch_in_epoch < len(self.loader)
        return bool(distributed.broadcast(due, self.group))

    def _end_epoch(self, seconds: float) -> dict[str, float] | None:
        """Count the epoch, give the EMA generator its own BatchNorm statistics, measure the metrics when they are
        due (on rank 0, shared with every rank) and record the epoch in the history; returns the scores, or None."""
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.ema is not None:
            self.ema.recalibrate()
        scores = self.evaluate() if self.evaluation.due(self.epoch) and self.group.is_main else None
        scores = distributed.broadcast(scores, self.group)
        self._history.end_epoch(self.epoch, len(self.loader), seconds, scores)
        return scores

    def _save_epoch(self, scores: dict[str, float] | None) -> None:
        """Unless another trainer has taken the run over (then every rank stops here): the epoch's sample grid,
        best.pt when `scores` hold the best `best_metric` so far, the epoch's checkpoint and its TensorBoard
        scalars."""
        self.ensure_run_held()
        if self.group.is_main:
            self.save_samples()
        # best.pt first, so that the epoch's checkpoint carries this epoch's best score to a resumed run.
        if self.evaluation.is_new_best(scores):
            self.save_checkpoint(best=True)
        self.save_checkpoint()
        if self._tensorboard is not None:
            self._tensorboard.write_epoch(self._history)

    # --- state --------------------------------------------------------------------------------------------
    @property
    def history(self) -> dict:
        """The losses and D's outputs per batch and per epoch, with each epoch's time and scores (see `history`)."""
        return self._history.data

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (a checkpoint.TrainingState as plain data); changes nothing.

        Under torchrun every rank must call it (it gathers each rank's RNG states); rank 0's is the one saved.
        """
        best = self.evaluation.best
        return checkpoint.TrainingState(
            epoch=self.epoch, batch_in_epoch=self.batch_in_epoch, step=self.step,
            generator=self.generator.state_dict(), discriminator=self.discriminator.state_dict(),
            ema_generator=self.ema.model.state_dict() if self.ema else None, opt_g=self.opt_g.state_dict(),
            opt_d=self.opt_d.state_dict(), scaler=self.scaler.state_dict(), rng=self.streams.state_dict(),
            fixed_noise=self.fixed_noise.cpu(), history=self._history.so_far(self.step),
            config=self.config.to_dict(), class_names=list(self.class_names),
            best=None if best is None else {"metric": self.config.best_metric, "value": best}).to_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (the config must already match)."""
        saved = checkpoint.TrainingState.from_dict(state)
        self.generator.load_state_dict(saved.generator)
        self.discriminator.load_state_dict(saved.discriminator)
        if self.ema is not None and saved.ema_generator:
            self.ema.model.load_state_dict(saved.ema_generator)
        self.opt_g.load_state_dict(saved.opt_g)
        self.opt_d.load_state_dict(saved.opt_d)
        if saved.scaler:
            self.scaler.load_state_dict(saved.scaler)
        self.streams.load_state_dict(saved.rng)
        self.fixed_noise = saved.fixed_noise.to(self.device)
        self._history = History(self.group, saved.history, scores=self.config.score_columns)
        self.epoch, self.batch_in_epoch, self.step = saved.epoch, saved.batch_in_epoch, saved.step
        # A best score of another metric (best_metric changed on resume) does not carry over.
        same_metric = saved.best is not None and saved.best["metric"] == self.config.best_metric
        self.evaluation.best = saved.best["value"] if same_metric else None

    def save_checkpoint(self, *, best: bool = False) -> Path:
        """Write the current state atomically under run_dir/checkpoints and prune old ones (best=True: best.pt).

        Under torchrun every rank calls it: rank 0 writes, and all wait until the file is complete. A trainer whose
        run dir was taken over raises runs.RunTakenOverError instead, having written nothing.
        """
        self.ensure_run_held()
        state = self.state_dict()
        if self.group.is_main:
            path = checkpoint.save_checkpoint(state, self.run, keep=self.config.keep_checkpoints, best=best)
        else:
            path = self.run.best if best else self.run.checkpoint(self.epoch, self.batch_in_epoch)
        distributed.barrier(self.group)
        if not best:
            self.newest_checkpoint = path
        return path

    # --- sampling -----------------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """G's moving average when the run keeps one (ema_decay > 0, on rank 0), else G."""
        return self.ema.model if self.ema is not None else self.generator

    def sample(self, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (in [-1, 1], on the CPU) for `noise` and, for a conditional run, `labels`; default the fixed noise
        (and labels) of the sample grid. G in eval mode."""
        if noise is None:
            noise, labels = self.fixed_noise, self.fixed_labels
        return generate(self.sampling_generator, noise, labels)

    def evaluate(self) -> dict[str, float]:
        """The run's metrics for the sampling generator now (see evaluation.Evaluation)."""
        return self.evaluation.measure(self.sample)

    def save_samples(self) -> Path:
        """The fixed-noise grid of the epoch just completed, as samples/epoch_NNNN.png."""
        self._lock.ensure_held()
        images = self.sample()
        return self.run.write(self.run.frame(self.epoch), lambda file: write_grid(images, file, self.grid_columns))


def train(config: Config | None, run_dir, *, resume: bool = True, device=None, progress: bool = True,
          on_epoch_end: Callable[[Trainer], None] | None = None) -> Trainer:
    """Build a Trainer in `run_dir` (resuming by default), train to config.epochs and return it."""
    trainer = Trainer(config, run_dir, device=device, resume=resume, progress=progress)
    trainer.fit(on_epoch_end=on_epoch_end)
    return trainer
