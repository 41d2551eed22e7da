"""Crash-safe training checkpoints: atomic writes, safe loading, pruning and resume discovery."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import colab, storage
from ._version import REPO_URL, __version__
from .config import Config, resume_config
from .runs import RunDir

FORMAT_VERSION = 1

_trash_notice_given = False  # whether this process has said where checkpoints pruned from Google Drive go
# A subset of what torch.load(weights_only=True) accepts. Types are matched exactly: subclasses such as
# numpy.float64, IntEnum or namedtuple pickle as their own class and would make the file unloadable.
_LEAF_TYPES = (bool, int, float, str, type(None), torch.dtype, torch.device, torch.Size)
_DICT_TYPES = (dict, OrderedDict)
_SEQ_TYPES = (list, tuple)


@dataclass
class TrainingState:
    """What a checkpoint holds, defined once: where training stands, the networks and optimisers, the random
    streams, the fixed noise of the sample grids, the history, the best score and the run's config. `to_dict` is
    what a checkpoint file holds (plain data: it loads with weights_only); `from_dict` reads one back, from earlier
    versions of dcganlib too."""

    epoch: int  # complete epochs
    generator: dict
    discriminator: dict
    opt_g: dict
    opt_d: dict
    config: dict  # Config.to_dict()
    history: dict  # history.History's data
    batch_in_epoch: int = 0  # batches of the next epoch already trained (a mid-epoch checkpoint)
    step: int = 0  # updates so far
    ema_generator: dict | None = None  # G's moving average, when the run keeps one
    scaler: dict | None = None  # the GradScaler's state (fp16)
    rng: dict | None = None  # seeds.TrainingStreams' states: every random stream, for an exact resume
    fixed_noise: torch.Tensor | None = None  # the z behind every epoch's sample grid
    best: dict | None = None  # {"metric": name, "value": score} of best.pt, once one is written
    class_names: list[str] = field(default_factory=list)  # a conditional run's classes

    def to_dict(self) -> dict:
        """The state as a checkpoint file holds it."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict) -> TrainingState:
        """A checkpoint file's state; one from before `best` keeps its best FID as best, and one from before
        `Config.seeding` its offset seeding."""
        known = {item.name for item in dataclasses.fields(cls)}
        values = {name: value for name, value in state.items() if name in known}
        values["config"] = {"seeding": "offset", **values["config"]}
        if values.get("best") is None and state.get("best_fid") is not None:
            values["best"] = {"metric": "fid", "value": state["best_fid"]}
        values["class_names"] = list(values.get("class_names") or [])
        return cls(**values)


# The keys every checkpoint has: the fields without a default.
REQUIRED_KEYS = tuple(item.name for item in dataclasses.fields(TrainingState)
                      if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file and what to do."""


def save_atomic(obj: object, path: str | os.PathLike, run: RunDir | None = None) -> Path:
    """Write `obj` with torch.save so that `path` holds either the old file or the complete new one; returns where it
    went. A file of `run` goes through run.write (kept on the runtime's disk while Drive is away)."""
    path = Path(path)
    try:
        if run is not None:
            return run.write(path, lambda file: torch.save(obj, file))
        storage.write_atomic(path, lambda file: torch.save(obj, file))
        return path
    except OSError as exc:
        raise CheckpointError(
            f"Could not write checkpoint {path}: {exc.strerror or exc}. Free some disk space or choose a writable run "
            "directory; any earlier file at that path is unchanged."
        ) from exc


def _check_plain(value: object, where: str) -> None:
    if isinstance(value, torch.Tensor) or type(value) in _LEAF_TYPES:
        return
    if type(value) in _DICT_TYPES:
        for key, item in value.items():
            _check_plain(key, f"{where} key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    elif type(value) in _SEQ_TYPES:
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    else:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise TypeError(
            f"{where} is a {kind}; checkpoints hold only tensors "
            "and int/float/str/bool/None in dicts, lists and tuples (convert it: str(path), float(x), ...)."
        )


def save_checkpoint(state: dict, run_dir: str | os.PathLike, *, keep: int = 3, best: bool = False) -> Path:
    """Atomically save a training state in the run's checkpoint folder, then prune to the newest `keep`.

    With best=True the state goes to best.pt instead, through the same checks; pruning never touches best.pt.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    payload = _payload(state)
    run = RunDir.of(run_dir)
    path = run.best if best else run.checkpoint(state["epoch"], state.get("batch_in_epoch", 0))
    written = save_atomic(payload, path, run)
    if not best:
        _prune(run, written, keep)
    return written


def _payload(state: dict) -> dict:
    """The state plus format and library versions, once it is known to load with weights_only."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks required keys: {', '.join(missing)}")
    # Checked before writing: an unloadable value would otherwise only surface when resuming.
    _check_plain(state, "state")
    return {**state, "format_version": FORMAT_VERSION, "library_version": __version__}


def _prune(run: RunDir, written: Path, keep: int) -> None:
    # The save already succeeded, so a file that cannot be deleted is only worth a warning.
    global _trash_notice_given
    stale = [p for p in run.checkpoints()[:-keep] if p != written]
    pruned = 0
    for p in stale:
        try:
            size = p.stat().st_size
            p.unlink()
            pruned += size
        except FileNotFoundError:
            continue
        except OSError as exc:
            warnings.warn(f"Could not delete old checkpoint file {p}: {exc.strerror or exc}", stacklevel=3)
    if pruned and not _trash_notice_given and colab.on_drive(run.path):
        # Said once per process: Drive moves deleted files to its Trash, where they still count against the quota.
        warnings.warn(colab.trash_notice(pruned), stacklevel=3)
        _trash_notice_given = True


_RESUME_ADVICE = "Delete or move it and resume from an earlier checkpoint, or start the run afresh."


def _unusable(path: Path, reason: str, advice: str = _RESUME_ADVICE, what: str = "Checkpoint") -> CheckpointError:
    return CheckpointError(f"{what} {path} is unusable: {reason}. {advice}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint without ever unpickling arbitrary objects."""
    return load_file(path, map_location, required=REQUIRED_KEYS)


def load_file(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    required: tuple[str, ...],
    what: str = "Checkpoint",
    advice: str = _RESUME_ADVICE,
) -> dict:
    """Load a torch file that must hold a dict with the `required` keys, refusing anything but tensors and plain data.

    Every failure is a CheckpointError naming `what` and the file, saying what is wrong and (`advice`) what to do.
    """
    path = Path(path)
    loaded = _torch_load(path, map_location, what, advice)
    if not isinstance(loaded, dict):
        raise _unusable(path, f"it holds a {type(loaded).__name__}, not a dict", advice, what)
    missing = [k for k in required if k not in loaded]
    if missing:
        raise _unusable(path, f"it lacks the keys {', '.join(missing)}", advice, what)
    version = loaded.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise _unusable(
            path,
            f"its format_version {version!r} (written by dcganlib {loaded.get('library_version', 'unknown')}) "
            f"is beyond the {FORMAT_VERSION} this dcganlib understands",
            f'Upgrade dcganlib (pip install -U "dcganlib @ git+{REPO_URL}") to load it.',
            what,
        )
    return loaded


def _torch_load(path: Path, map_location: str | torch.device, what: str, advice: str) -> object:
    """torch.load with weights_only; every failure a CheckpointError that says why."""
    try:
        # weights_only: a checkpoint downloaded from the web may be hostile, and full unpickling runs code.
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise _unusable(path, "it does not exist", "Check the path and that the drive is mounted.", what) from None
    except OSError as exc:
        raise _unusable(path, f"it cannot be read ({exc.strerror or exc})", "Check its permissions.", what) from exc
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported (global: GLOBAL \S+|[^\n]*)", str(exc))
        detail = found.group(0) if found else "unreadable data"
        reason = f"it is damaged or holds more than tensors and plain data ({detail})"
        raise _unusable(path, reason, advice, what) from exc
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise _unusable(path, f"it is empty, truncated or not a torch file ({first_line})", advice, what) from exc


def _search(run_dir: str | os.PathLike, map_location: str | torch.device) -> tuple[dict, Path] | None:
    # Temp files start with "." and end in ".tmp", so RunDir.checkpoints never lists them.
    for path in reversed(RunDir.open(run_dir).checkpoints()):
        try:
            return load_checkpoint(path, map_location), path
        except CheckpointError as exc:
            # stacklevel 3 points past this helper at the caller of latest_checkpoint/load_latest.
            warnings.warn(f"Skipping {path.name}: {exc}", stacklevel=3)
    return None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """Return the newest checkpoint under run_dir that loads and validates, warning about each bad one."""
    found = _search(run_dir, "cpu")
    return found[1] if found else None


def load_latest(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict, Path] | None:
    """Return (state, path) for the newest valid checkpoint under run_dir, or None if there is none."""
    return _search(run_dir, map_location)


def require_latest(run_dir: str | os.PathLike) -> tuple[dict, Path]:
    """Like load_latest, but a run with no valid checkpoint is a FileNotFoundError that says to train first."""
    found = load_latest(run_dir)
    if found is None:
        raise FileNotFoundError(f"no valid checkpoint in {RunDir(run_dir).checkpoint_dir}: train first")
    return found


def interrupted_advice(run_dir: str | os.PathLike, epoch: int) -> str:
    """What a run interrupted during `epoch` (1-based) keeps and how to go on, with Drive's upload lag."""
    newest = latest_checkpoint(run_dir)
    kept = f"the newest checkpoint is {newest}" if newest else "no checkpoint was written yet"
    advice = f"Interrupted during epoch {epoch}: {kept}. Run the same cells (or command) to resume."
    if colab.on_drive(run_dir):
        advice += (" Drive uploads lag the runtime: before closing this tab, run dcganlib.flush_drive() so the newest "
                   "checkpoint reaches Drive.")
    return advice


def starting_point(run_dir: str | os.PathLike, config: Config | None, resume: bool = True,
                   found: tuple[dict, Path] | None = None) -> tuple[Config, tuple[dict, Path] | None]:
    """Where a trainer in `run_dir` starts: the config to train with, and the checkpoint to resume from, if any.

    `found` is that checkpoint when the caller has already loaded it; resume=False ignores checkpoints. Resuming,
    the config is config.resume_config's choice; a new run needs a config.
    """
    found = (found or load_latest(run_dir)) if resume else None
    if found is not None:
        return resume_config(config, TrainingState.from_dict(found[0]).config), found
    if config is None:
        raise FileNotFoundError(f"no checkpoint in {RunDir(run_dir).checkpoint_dir} to resume from; "
                                "choose a preset to start a new run")
    return config, None
