"""Small exported generators for sampling and latent walks, kept apart from resumable checkpoints, and shared on
the Hugging Face Hub."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from . import checkpoint, colab, hub
from .images import save_grid
from .models import GENERATOR_FIELDS, Generator, generate, generator_for, make_noise
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
    """A generator in eval mode from a run dir, a checkpoint, an exported file, a Hub repo ("hf://user/name", see
    push_generator), or (default) the shipped one."""
    if hub.is_hub_name(source):
        source = hub.download_generator(source)
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


def push_generator(source, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
    """Upload the generator of `source` (a run dir, or a file export_generator wrote) to the Hub model repo
    `repo_id` ("user/name"), with a grid of its samples and a model card; returns the repo's URL. The token is
    `token`, else the one `huggingface-cli login` stored or HF_TOKEN. Load it back with
    `load_generator("hf://user/name")`."""
    path = colab.ensure_drive(source)
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging)
        if path.is_dir():
            export_generator(path, folder / hub.GENERATOR_FILE)
        else:
            shutil.copyfile(path, folder / hub.GENERATOR_FILE)
        generator = load_generator(folder / hub.GENERATOR_FILE)
        count = 64
        labels = torch.arange(count) % generator.num_classes if generator.num_classes else None
        save_grid(generate(generator, make_noise(count, generator.z_dim, seed=0), labels), folder / hub.SAMPLES_FILE)
        facts = {**_architecture_facts(generator), **_training_facts(path)}
        (folder / "README.md").write_text(hub.model_card(repo_id, facts, generator.class_names
                                                         if generator.num_classes else ()), encoding="utf-8")
        return hub.upload_folder(folder, repo_id, token=token, private=private)


def _architecture_facts(generator: Generator) -> dict[str, str]:
    colour = "colour (RGB)" if generator.channels == 3 else "grey"
    facts = {"images": f"{generator.image_size} px, {colour}", "latent z": f"{generator.z_dim} numbers, N(0, 1)"}
    if generator.num_classes:
        facts["classes"] = ", ".join(generator.class_names)
    return facts


def _training_facts(path: Path) -> dict[str, str]:
    """How the generator was trained, as far as `path` (a run dir, or an exported file) says."""
    if not path.is_dir():
        state = checkpoint.load_file(path, required=("generator",), what="Generator file", advice=_ADVICE)
        return {"epochs": str(state.get("epoch", "unknown")), "from checkpoint": str(state.get("source", "unknown"))}
    saved = checkpoint.TrainingState.from_dict(checkpoint.require_latest(path)[0])
    config = saved.config
    facts = {"data set": config["dataset"], "preset": config["preset"], "epochs": str(saved.epoch),
             "batch size": str(config["batch_size"]), "learning rate (G, D)": f"{config['lr']:g}, "
             f"{config['lr_d'] or config['lr']:g}", "loss": config["loss"],
             "samples from": f"EMA of G's weights (decay {config['ema_decay']:g})" if config["ema_decay"] else "G"}
    fids = [value for value in saved.history["epoch"].get("fid", []) if value is not None]
    if fids:
        facts["best FID"] = f"{min(fids):.1f} (dcganlib's offline FID for grey digits, else Inception's)"
    return facts
