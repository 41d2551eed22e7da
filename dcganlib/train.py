"""The DCGAN training loop: per-epoch checkpoints, exact resume, progress bars and sample frames.

Under `torchrun --nproc-per-node N` the same loop trains data-parallel (see `distributed`): every process takes its
share of each batch, rank 0 alone writes files, and a checkpoint holds every rank's RNG states.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import random
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, colab, distributed, metrics, runs
from .augment import diff_augment
from .config import ARCHITECTURE_FIELDS, RUN_CONTROL_FIELDS, Config, ConfigError
from .data import BatchLoader, dataset_size, load_dataset
from .devices import autocast_dtype, pick_device
from .images import save_grid
from .losses import discriminator_loss, generator_loss, gradient_penalty
from .models import build_models, generate, make_noise, recalibrate_batch_norm
from .step import plain_train_step

STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")
DISPLAY_EVERY = 10  # batches between progress-bar updates: reading losses waits for the device
RECALIBRATION_IMAGES = 1024  # noise behind the EMA generator's own BatchNorm statistics after each epoch


class ArchitectureMismatchError(ValueError):
    """The requested networks differ from the checkpoint's; the message names the fields."""


def empty_history() -> dict:
    """History layout read by the plots: per-batch and per-epoch lists."""
    return {"batch": {"step": [], **{k: [] for k in STAT_NAMES}},
            "epoch": {"epoch": [], **{k: [] for k in STAT_NAMES}, "seconds": [], "fid": []}}


def resolve_resume_config(requested: Config | None, saved: dict) -> Config:
    """The checkpoint's config, with the requested run-control fields; other differences are warned about."""
    saved_config = Config.from_dict(saved)
    if requested is None:
        return saved_config
    differing = [f"{name} (checkpoint {getattr(saved_config, name)!r}, requested {getattr(requested, name)!r})"
                 for name in ARCHITECTURE_FIELDS if getattr(saved_config, name) != getattr(requested, name)]
    if differing:
        raise ArchitectureMismatchError(
            "the checkpoint's networks differ from the requested ones: " + "; ".join(differing)
            + ". Use a new run dir, or start over with --fresh / resume=False.")
    kept = [name for name in dataclasses.asdict(requested)
            if name not in RUN_CONTROL_FIELDS and name not in ARCHITECTURE_FIELDS
            and getattr(saved_config, name) != getattr(requested, name)]
    if kept:
        warnings.warn(f"resuming keeps the checkpoint's {', '.join(kept)} so training continues exactly",
                      stacklevel=3)
    return dataclasses.replace(saved_config, **{name: getattr(requested, name) for name in RUN_CONTROL_FIELDS})


def _rng_state(device: torch.device | None = None) -> dict:
    """Global RNG states as plain data (numpy's array becomes a tensor so weights_only loading accepts it).

    With a CUDA `device` (a data-parallel rank) only that GPU's state is read: reading all would make every process
    open a context on every GPU.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _saved_world_size(state: dict) -> int:
    """How many processes trained the run that wrote `state` (checkpoints from one process say nothing)."""
    return len(state["rng"].get("ranks") or [None])


def _quiet(message: str) -> None:
    """The log of every rank but rank 0: one process speaks for the group."""


def _append_stats(batch_history: dict, pending: list[torch.Tensor], last_step: int) -> None:
    """Append per-batch stats still on the device (one sync for many batches); the newest was step `last_step`."""
    if not pending:
        return
    values = torch.stack(pending).cpu().tolist()
    first_step = last_step - len(values) + 1
    for offset, row in enumerate(values):
        batch_history["step"].append(first_step + offset)
        for name, value in zip(STAT_NAMES, row, strict=True):
            batch_history[name].append(value)


def warmed_up_decay(decay: float, step: int) -> float:
    """The EMA decay at `step`: early on the average follows G closely, else the first epochs' samples would blur."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, parameter by parameter; buffers copied from `model`."""
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - decay)
    for average_buffer, buffer in zip(average.buffers(), model.buffers(), strict=True):
        average_buffer.copy_(buffer)


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
        self.run = runs.RunDir.open(run_dir)
        self.log = log if self.group.is_main else _quiet
        self.progress = progress and self.group.is_main
        self._lock = runs.RunLock(self.run, log=self.log)
        self._hold_lock()
        try:
            found = self._find_checkpoint(config, resume, found)
            self.config = resolve_resume_config(config, found[0]["config"]) if found else config
            self._write_config()
            self._choose_precision()
            # Keep this order: the seed and the initial weights come first, then the noise and the data order, so
            # a config gives the same run, bit for bit, every time.
            self._build_models()
            self._build_optimizers()
            self._make_noise()
            self._compile_models()
            self._build_loader()
            self._prepare_fid()
            self._restore_or_start(found)
            self._writer = self._open_tensorboard() if self.config.tensorboard and self.group.is_main else None
        except BaseException:
            self._lock.release()
            raise
        weakref.finalize(self, self._lock.release)  # a Trainer dropped without fit() frees the run dir too

    # --- construction, in the order __init__ runs it -----------------------------------------------------
    def _hold_lock(self) -> None:
        """Take the run dir's lock: rank 0 for its whole group, which hears of a refusal and raises it too."""
        self._on_main_for_all(self._lock.acquire)

    def ensure_run_held(self) -> None:
        """Before a write: raise runs.RunTakenOverError on every rank if another trainer has taken the run over."""
        self._on_main_for_all(self._lock.ensure_held)

    def _on_main_for_all(self, action: Callable[[], object]) -> None:
        """Run `action` on rank 0; a lock or run-dir error it raises is raised on every rank."""
        error = None
        if self.group.is_main:
            try:
                action()
            except (runs.RunDirInUseError, runs.RunTakenOverError) as refused:
                error = refused
            except OSError as unwritable:
                error = self._unwritable(unwritable)
        error = distributed.broadcast(error, self.group)
        if error is not None:
            raise error

    def _unwritable(self, error: OSError) -> checkpoint.CheckpointError:
        return checkpoint.CheckpointError(f"cannot write to the run dir {self.run.path} ({error}); choose a writable "
                                          "folder (on Colab, check that Drive is mounted)")

    def _find_checkpoint(self, config: Config | None, resume: bool,
                         found: tuple[dict, Path] | None) -> tuple[dict, Path] | None:
        """The newest checkpoint to resume from, if any; without one, a config is needed."""
        if not resume:
            found = None
        elif found is None:
            found = checkpoint.load_latest(self.run)
        if found is None and config is None:
            raise FileNotFoundError(f"no checkpoint in {self.run.checkpoint_dir} to resume from; "
                                    "choose a preset to start a new run")
        return found

    def _write_config(self) -> None:
        if not self.group.is_main:
            return
        try:
            self.run.write_config(self.config)
        except OSError as error:  # fail now, not after loading data and an epoch of training
            raise self._unwritable(error) from error

    def _choose_precision(self) -> None:
        self.amp_dtype = autocast_dtype(self.config.precision, self.device)
        self.memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format

    def _build_models(self) -> None:
        torch.manual_seed(self.config.seed)  # the initial weights: the first draw of the run
        generator, discriminator = (model.to(self.device, memory_format=self.memory_format)
                                    for model in build_models(self.config))
        keep_ema = self.config.ema_decay > 0 and self.group.is_main  # only rank 0 samples
        # Copied before any SyncBatchNorm: rank 0 alone runs the EMA generator, to sample and to recalibrate it.
        self.ema_generator = copy.deepcopy(generator).eval() if keep_ema else None
        self.generator, self.discriminator = (
            distributed.batch_norm(model, self.group, self.device, self.config.sync_batch_norm)
            for model in (generator, discriminator))

    def _build_optimizers(self) -> None:
        cfg = self.config
        # One fused kernel per step on CUDA; elsewhere the multi-tensor (foreach) loop, the fastest there is.
        adam_implementation = {"fused": True} if self.device.type == "cuda" else {"foreach": True}
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas, **adam_implementation)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas,
                                      **adam_implementation)
        # A loss scaler is only needed for fp16, whose small range underflows gradients.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def _make_noise(self) -> None:
        """The training noise's own RNG, and the fixed noise behind every sample grid."""
        cfg = self.config
        self.noise_rng = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self._fid_reference = None  # built on the first standard-FID evaluation
        self.augment_rng = torch.Generator(self.device).manual_seed(cfg.seed + 4)  # DiffAugment's draws
        self.fixed_noise = make_noise(cfg.sample_count, cfg.z_dim,
                                      generator=torch.Generator().manual_seed(cfg.seed + 2)).to(self.device)

    def _compile_models(self) -> None:
        """The forward passes the step calls: the networks themselves, or wrappers sharing their weights.

        Under torchrun the wrappers are DistributedDataParallel, which averages gradients across processes. G's
        update runs through D without updating it, so it calls D past that wrapper (which would wait for D's
        gradients).
        """
        self._g_forward = self._compiled(distributed.wrap(self.generator, self.group, self.device))
        self._d_forward = self._compiled(distributed.wrap(self.discriminator, self.group, self.device))
        self._d_forward_for_g = self._compiled(self.discriminator) if self.group.active else self._d_forward
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        # "reduce-overhead" replays each compiled pass as a CUDA graph, cutting the launch cost that dominates
        # the small course net. BatchNorm's running-stat updates in training mode mutate buffers, which may
        # make torch skip the capture; benchmarks/gpu_check.py measures whether it does.
        return torch.compile(model, mode=self.config.compile_mode) if self.config.compile else model

    def _build_loader(self) -> None:
        cfg = self.config
        dataset = self._load_dataset()
        if cfg.batch_size > len(dataset):  # known only now for a folder: of images
            raise ConfigError(f"batch_size: {cfg.batch_size} is more than the {len(dataset)} images in "
                              f"{cfg.dataset}; choose a batch size of at most {len(dataset)}")
        if cfg.batch_size % self.group.world_size:
            raise ConfigError(f"batch_size: {cfg.batch_size} images per step do not split evenly over "
                              f"{self.group.world_size} processes; choose a multiple of {self.group.world_size}")
        self.loader = BatchLoader(dataset, cfg.batch_size, seed=cfg.seed,
                                  device=self.device if cfg.resident_data else "cpu",
                                  memory_format=self.memory_format, rank=self.group.rank,
                                  world_size=self.group.world_size)

    def _load_dataset(self):
        """The config's data set; under torchrun rank 0 reads (and downloads) it first, the others then find it."""
        for rank_0_turn in (True, False):
            if self.group.is_main == rank_0_turn:
                dataset = load_dataset(self.config.dataset, self.config.data_root, self.config.image_size,
                                       self.config.channels)
            distributed.barrier(self.group)
        return dataset

    def _prepare_fid(self) -> None:
        """The standard FID's network and real statistics now, so a missing package or download fails at once."""
        if self.config.fid_every and not self.config.offline_fid and self.group.is_main:
            self._standard_fid_reference()

    def _restore_or_start(self, found: tuple[dict, Path] | None) -> None:
        """Continue from the checkpoint `found`, or start at step 0; says which."""
        self.epoch = self.batch_in_epoch = self.step = 0
        self.best_fid: float | None = None
        self.history = empty_history()
        self._pending: list[torch.Tensor] = []  # per-batch stats still on the device
        if found is None:
            self.log(f"Starting fresh in {self.run.path}.")
            return
        state, path = found
        self.load_state_dict(state)
        where = f", batch {self.batch_in_epoch} of epoch {self.epoch + 1}" if self.batch_in_epoch else ""
        self.log(f"Resumed from epoch {self.epoch}{where} ({path}, step {self.step}).")

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard") from error
        return SummaryWriter(str(self.run.tensorboard))

    # --- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly, as plain data (loads with weights_only=True); changes nothing.

        Under torchrun every rank must call it (it gathers each rank's RNG states); rank 0's is the one saved.
        """
        return {
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "ema_generator": self.ema_generator.state_dict() if self.ema_generator else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": self._rng_states(),
            "data": {"seed": self.config.seed, "epoch": self.epoch, "start_batch": self.batch_in_epoch,
                     "batch_size": self.config.batch_size},
            "fixed_noise": self.fixed_noise.cpu(), "history": self._history_so_far(), "config": self.config.to_dict(),
            "best_fid": self.best_fid,
        }

    def _rng_states(self) -> dict:
        """The global RNG states (rank 0's), the noise RNG's, and under torchrun every rank's, for an exact resume."""
        device = self.device if self.group.active else None
        states = {**_rng_state(device), "noise": self.noise_rng.get_state(), "augment": self.augment_rng.get_state()}
        if self.group.active:
            states["ranks"] = distributed.gather(_rng_state(device), self.group)
        return states

    def _history_so_far(self) -> dict:
        """A copy of the history with every batch trained so far, the stats still on the device included."""
        history = {level: {name: list(values) for name, values in columns.items()}
                   for level, columns in self.history.items()}
        _append_stats(history["batch"], self._pending, self.step)
        return history

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (the config must already match)."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.ema_generator is not None and state.get("ema_generator"):
            self.ema_generator.load_state_dict(state["ema_generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(self._own_rng_state(state), self.device)
        self.noise_rng.set_state(state["rng"]["noise"])
        if "augment" in state["rng"]:  # checkpoints before DiffAugment have none, and made no draws
            self.augment_rng.set_state(state["rng"]["augment"])
        self.fixed_noise = state["fixed_noise"].to(self.device)
        self.history = state["history"]
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.best_fid = state.get("best_fid")

    def _own_rng_state(self, state: dict) -> dict:
        """This rank's RNG states in `state`; from another number of processes, rank 0's, with a warning."""
        saved = _saved_world_size(state)
        if saved != self.group.world_size:
            if self.group.is_main:
                warnings.warn(f"this checkpoint was written by {saved} process(es) and resumes on "
                              f"{self.group.world_size}: training goes on from the same step, data order and noise, "
                              "but is no longer bit-exact (BatchNorm statistics are per process, and gradients are "
                              "summed in another order)", stacklevel=5)
            return state["rng"]
        return state["rng"]["ranks"][self.group.rank] if self.group.active else state["rng"]

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
        return path

    # --- training ----------------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, real: torch.Tensor) -> torch.Tensor:
        """One D update then one G update; returns (loss_d, loss_g, D(x), D(G(z))) on the device."""
        cfg = self.config
        # Every process draws the whole batch's noise and takes its rows: the same z as in one process.
        z = distributed.share_of(make_noise(real.size(0) * self.group.world_size, cfg.z_dim, device=self.device,
                                            generator=self.noise_rng), self.group)
        # (1) Update D: maximise log D(x) + log(1 - D(G(z))). detach() stops this loss from reaching G.
        with self._autocast():
            fake = self._g_forward(z)
            real_logits = self._d_forward(self._augment(real))
            fake_logits = self._d_forward(self._augment(fake.detach()))
            loss_d = discriminator_loss(cfg.loss, real_logits.float(), fake_logits.float(), cfg.label_smoothing)
        if cfg.loss == "wgan-gp":
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(self._d_forward, real, fake.float(), self.noise_rng)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)
        # (2) Update G: maximise log D(G(z)) (non-saturating), through the freshly updated D. D's own weight
        # gradients would be thrown away before its next step, so they are not computed.
        self.discriminator.requires_grad_(False)
        with self._autocast():
            loss_g = generator_loss(cfg.loss, self._d_forward_for_g(self._augment(fake)).float())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.discriminator.requires_grad_(True)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        if self.ema_generator is not None:
            self._update_ema()
        return torch.stack([loss_d.detach(), loss_g.detach(),
                            torch.sigmoid(real_logits.detach().float()).mean(),
                            torch.sigmoid(fake_logits.detach().float()).mean()])

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees of a batch: the images through the run's DiffAugment policy (unchanged without one)."""
        return diff_augment(images, self.config.augment_policy, self.augment_rng)

    def _update_ema(self) -> None:
        update_average(self.ema_generator, self.generator, warmed_up_decay(self.config.ema_decay, self.step))

    def recalibrate(self, generator: torch.nn.Module) -> None:
        """Give an averaged `generator` its own BatchNorm statistics; after each epoch for the EMA generator's
        samples, FID and checkpoint.

        The same seeded noise every time, away from the training RNGs; the next step's average copies the live
        statistics back in, so training, and a resume from this checkpoint, go on exactly as they would have.
        """
        cfg = self.config
        noise = make_noise(RECALIBRATION_IMAGES, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 5))
        recalibrate_batch_norm(generator, noise.split(cfg.batch_size))

    def _flush_stats(self) -> None:
        """Move per-batch stats from the device into history (one sync for many batches), averaged over ranks."""
        if self.group.active and self._pending:
            self._pending = list(distributed.mean(torch.stack(self._pending), self.group))
        _append_stats(self.history["batch"], self._pending, self.step)
        self._pending.clear()

    def fit(self, epochs: int | None = None, *, on_epoch_end: Callable[[Trainer], None] | None = None) -> dict:
        """Train until `epochs` (default config.epochs) epochs are complete; returns the history."""
        target = self.config.epochs if epochs is None else epochs
        if self.epoch >= target:
            self.log(f"Already trained {self.epoch} epochs (target {target}); raise epochs to train more.")
        self._hold_lock()
        try:
            while self.epoch < target:
                self._train_epoch(target)
                if on_epoch_end is not None:
                    on_epoch_end(self)
        except KeyboardInterrupt:
            self.log(self.interrupted_advice())
            raise
        finally:
            self._lock.release()
        return self.history

    def interrupted_advice(self) -> str:
        """What an interrupted run keeps and how to go on: the newest checkpoint, and Drive's upload lag."""
        newest = checkpoint.latest_checkpoint(self.run)
        kept = f"the newest checkpoint is {newest}" if newest else "no checkpoint was written yet"
        advice = f"Interrupted during epoch {self.epoch + 1}: {kept}. Run the same cells (or command) to resume."
        if colab.on_drive(self.run.path):
            advice += (" Drive uploads lag the runtime: before closing this tab, run dcganlib.flush_drive() so "
                       "the newest checkpoint reaches Drive.")
        return advice

    def _train_epoch(self, target: int) -> None:
        self.generator.train()
        self.discriminator.train()
        started = last_save = time.monotonic()
        bar = tqdm(self.loader.epoch(self.epoch, start_batch=self.batch_in_epoch), total=len(self.loader),
                   initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{target}", disable=not self.progress,
                   leave=True, dynamic_ncols=True)
        for real in bar:
            self._pending.append(self.train_step(real))
            self.step += 1
            self.batch_in_epoch += 1
            if len(self._pending) >= DISPLAY_EVERY:
                self._flush_stats()
                bar.set_postfix(self._postfix(), refresh=False)
            if self._mid_epoch_save_due(last_save):
                self._flush_stats()  # state_dict() would read them too; moving them first reads them once
                self.save_checkpoint()
                last_save = time.monotonic()
        self._flush_stats()
        bar.set_postfix(self._postfix(), refresh=False)  # close() draws the final line once
        bar.close()
        self._end_epoch(time.monotonic() - started)

    def _mid_epoch_save_due(self, last_save: float) -> bool:
        """checkpoint_minutes have passed since the last save, and the epoch's own checkpoint is not next."""
        minutes = self.config.checkpoint_minutes
        if not minutes or (self.group.active and self.batch_in_epoch % DISPLAY_EVERY):
            return False  # under torchrun the ranks agree every DISPLAY_EVERY batches, on rank 0's clock
        due = time.monotonic() - last_save >= 60 * minutes and self.batch_in_epoch < len(self.loader)
        return bool(distributed.broadcast(due, self.group))

    def _postfix(self) -> dict:
        batch = self.history["batch"]
        labels = {"loss_d": "loss_D", "loss_g": "loss_G", "d_real": "D(x)", "d_fake": "D(G(z))"}
        return {labels[name]: f"{batch[name][-1]:.3f}" for name in STAT_NAMES if batch[name]}

    def _end_epoch(self, seconds: float) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.ema_generator is not None:
            self.recalibrate(self.ema_generator)
        # FID and samples on rank 0; every rank records the FID, as the best-checkpoint save needs them all.
        fid = distributed.broadcast(self.evaluate_fid() if self._fid_due() and self.group.is_main else None,
                                    self.group)
        self._record_epoch(seconds, fid)
        self.ensure_run_held()
        if self.group.is_main:
            self.save_samples()
        # best.pt first, so that the epoch's checkpoint carries this epoch's best FID to a resumed run.
        self._keep_best(fid)
        self.save_checkpoint()
        self._log_tensorboard()

    def _fid_due(self) -> bool:
        return bool(self.config.fid_every) and self.epoch % self.config.fid_every == 0

    def _record_epoch(self, seconds: float, fid: float | None) -> None:
        """Append the epoch's means of the per-batch stats, its wall time and its FID (None when not measured)."""
        epoch_history, batch_history = self.history["epoch"], self.history["batch"]
        epoch_history["epoch"].append(self.epoch)
        for name in STAT_NAMES:
            epoch_history[name].append(float(np.mean(batch_history[name][-len(self.loader):])))
        epoch_history["seconds"].append(seconds)
        epoch_history["fid"].append(fid)

    def _keep_best(self, fid: float | None) -> None:
        """Save best.pt when this epoch's FID is the lowest so far (ties go to the newer epoch)."""
        if fid is not None and (self.best_fid is None or fid <= self.best_fid):
            self.best_fid = fid
            self.save_checkpoint(best=True)

    def _log_tensorboard(self) -> None:
        if self._writer is None:
            return
        epoch_history = self.history["epoch"]
        for name in (*STAT_NAMES, "fid"):
            if epoch_history[name][-1] is not None:
                self._writer.add_scalar(name, epoch_history[name][-1], self.epoch)
        self._writer.flush()

    # --- sampling ----------------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The EMA generator when kept, else the generator."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Images (in [-1, 1], on the CPU) for `noise`, default the fixed noise; G in eval mode."""
        return generate(self.sampling_generator, self.fixed_noise if noise is None else noise)

    def evaluate_fid(self) -> float:
        """FID of `fid_samples` images from seeded noise.

        Digits: offline FID (the shipped MNIST classifier) against the held-out mnist-5k digits. Any other data set:
        the standard FID (pytorch-fid's Inception) against as many of the run's own training images.
        """
        cfg = self.config
        noise = make_noise(cfg.fid_samples, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 3))
        fakes = self.sample(noise)
        if cfg.offline_fid:
            return metrics.offline_fid(fakes, reference=metrics.real_reference()).fid
        network, real = self._standard_fid_reference()
        fake = metrics.feature_statistics(metrics.inception_features(fakes, network))
        return metrics.frechet_distance(*fake, real.mu, real.sigma)

    def _standard_fid_reference(self) -> tuple[torch.nn.Module, metrics.RealReference]:
        """The FID network and the statistics of `fid_samples` training images (the first of epoch 0's order)."""
        if self._fid_reference is None:
            network = metrics.load_inception(self.device)
            indices = self.loader.order(0)[: self.config.fid_samples].tolist()
            reals = torch.stack([self.loader.dataset[i] for i in indices])
            mu, sigma = metrics.feature_statistics(metrics.inception_features(reals, network))
            self._fid_reference = network, metrics.RealReference(mu, sigma, len(indices), "training images",
                                                                 metrics.FID_NETWORK)
        return self._fid_reference

    def save_samples(self) -> Path:
        """The fixed-noise grid of the epoch just completed, as samples/epoch_NNNN.png."""
        self._lock.ensure_held()
        return save_grid(self.sample(), self.run.frame(self.epoch))


def seconds_per_step(config: Config, device=None, steps: int = 3) -> float:
    """Seconds one D + G step of `config`'s networks takes on `device`, timed on random data.

    Throwaway copies of the networks are timed, and the global RNG is restored: no run is touched.
    """
    device = pick_device(device)
    amp_dtype = autocast_dtype(config.precision, device)
    with torch.random.fork_rng(devices=[]):
        generator, discriminator = (model.to(device) for model in build_models(config))
        opt_g, opt_d = (torch.optim.Adam(model.parameters()) for model in (generator, discriminator))
        real = torch.rand(config.batch_size, config.channels, config.image_size, config.image_size, device=device)

        def step() -> None:
            # The plain step under the run's autocast precision: the Trainer's step without EMA and bookkeeping.
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                plain_train_step(generator, discriminator, opt_g, opt_d, real,
                                 make_noise(config.batch_size, config.z_dim, device=device))

        step()  # the first step pays for allocations and kernel selection
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - started) / steps


def training_time(config: Config, device=None) -> str:
    """How long `config.epochs` epochs will take on `device`, from a few steps timed now: one line for notebooks."""
    per_step = seconds_per_step(config, device)
    images = dataset_size(config.dataset)
    if images is None:
        return f"One training step takes about {per_step:.3f} s here ({config.batch_size} images)."
    steps = images // config.batch_size * config.epochs
    return (f"{config.epochs} epochs of {config.dataset} ({steps:,} steps) will take about "
            f"{_duration(per_step * steps)} here ({per_step:.3f} s a step, timed on random data).")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def train(config: Config | None, run_dir, *, resume: bool = True, device=None, progress: bool = True,
          on_epoch_end: Callable[[Trainer], None] | None = None) -> Trainer:
    """Build a Trainer in `run_dir` (resuming by default), train to config.epochs and return it."""
    trainer = Trainer(config, run_dir, device=device, resume=resume, progress=progress)
    trainer.fit(on_epoch_end=on_epoch_end)
    return trainer
