"""Small exported generators for sampling and latent walks, kept apart from resumable checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint, colab
from .config import ARCHITECTURE_FIELDS
from .models import Generator

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_GENERATOR = ASSETS / "mnist28_generator.pt"


def export_generator(run_dir, path=None) -> Path:
    """Write the newest checkpoint's generator (its EMA copy when kept) as a small file; returns its path."""
    state, source = checkpoint.require_latest(run_dir)
    weights = state.get("ema_generator") or state["generator"]
    exported = {"generator": weights, "architecture": {k: state["config"][k] for k in ARCHITECTURE_FIELDS},
                "epoch": state["epoch"], "source": source.name, "format_version": checkpoint.FORMAT_VERSION}
    return checkpoint.save_atomic(exported, Path(path) if path else Path(run_dir) / "generator.pt")


def load_generator(source=None, device="cpu") -> Generator:
    """A generator in eval mode from a run dir, a checkpoint, an exported file, or (default) the shipped one."""
    path = colab.ensure_drive(source) if source is not None else SHIPPED_GENERATOR
    if path.is_dir():
        state, _ = checkpoint.require_latest(path)
    elif path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path} is neither a run dir nor a generator file")
    architecture = state.get("architecture") or {k: state["config"][k] for k in ARCHITECTURE_FIELDS}
    generator = Generator(architecture["z_dim"], architecture["channels"], architecture["g_features"],
                          architecture["image_size"], architecture["batch_norm"])
    generator.load_state_dict(state.get("ema_generator") or state["generator"])
    return generator.to(device).eval()
