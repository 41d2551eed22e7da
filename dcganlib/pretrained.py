"""Small exported generators for sampling and latent walks, kept apart from resumable checkpoints."""

from __future__ import annotations

from pathlib import Path

from . import checkpoint, colab
from .models import GENERATOR_FIELDS, Generator, generator_for
from .runs import ASSETS, RunDir

SHIPPED_GENERATOR = ASSETS / "mnist28_generator.pt"
SHIPPED_CONDITIONAL_GENERATOR = ASSETS / "mnist28_conditional_generator.pt"  # `make pretrained-conditional`
_ADVICE = "Point to a run dir, a checkpoint, or a file written by export_generator (`python -m dcganlib export`)."


def export_generator(run_dir, path=None) -> Path:
    """Write the newest checkpoint's generator (its EMA copy when kept) as a small file; returns its path."""
    state, source = checkpoint.require_latest(run_dir)
    saved = checkpoint.TrainingState.from_dict(state)
    exported = {"generator": _sampling_weights(state), "architecture": _architecture(state, source),
                "epoch": saved.epoch, "source": source.name, "format_version": checkpoint.FORMAT_VERSION}
    if saved.class_names:  # a conditional generator keeps the names of its classes
        exported["class_names"] = saved.class_names
    if path:
        return checkpoint.save_atomic(exported, Path(path))
    run = RunDir.of(run_dir)
    return checkpoint.save_atomic(exported, run.generator, run)


def load_generator(source=None, device="cpu") -> Generator:
    """A generator in eval mode from a run dir, a checkpoint, an exported file, or (default) the shipped one."""
    path = colab.ensure_drive(source) if source is not None else SHIPPED_GENERATOR
    if path.is_dir():
        state, path = checkpoint.require_latest(path)
    elif path.is_file():
        state = checkpoint.load_file(path, required=("generator",), what="Generator file", advice=_ADVICE)
    else:
        raise FileNotFoundError(f"{path} is neither a run dir nor a generator file")
    architecture = _architecture(state, path)
    generator = generator_for(architecture)
    try:
        generator.load_state_dict(_sampling_weights(state))
    except (RuntimeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise checkpoint.CheckpointError(f"Generator file {path} is unusable: its weights do not fit the "
                                         f"architecture it names ({first_line}). {_ADVICE}") from error
    if generator.num_classes:
        generator.class_names = tuple(state.get("class_names") or generator.class_names)
    return generator.to(device).eval()


def _architecture(state: dict, path: Path) -> dict:
    """The generator's sizes: an exported file's `architecture`, else those fields of a checkpoint's config; with
    num_classes for a conditional generator only (an unconditional one names GENERATOR_FIELDS alone)."""
    found = state.get("architecture") or state.get("config") or {}
    missing = [k for k in GENERATOR_FIELDS if k not in found] if isinstance(found, dict) else GENERATOR_FIELDS
    if missing:
        raise checkpoint.CheckpointError(f"Generator file {path} is unusable: it names no architecture (missing "
                                         f"{', '.join(missing)}). {_ADVICE}")
    conditional = {"num_classes": found["num_classes"]} if found.get("num_classes") else {}
    return {**{k: found[k] for k in GENERATOR_FIELDS}, **conditional}


def _sampling_weights(state: dict) -> dict:
    """The generator's weights to sample from: the EMA copy when the run kept one, else the trained generator."""
    return state.get("ema_generator") or state["generator"]
