"""Where dcganlib's files live: a run folder's layout (checkpoints, samples, config, plots) and the shipped assets.

    <run_dir>/
        config.yaml                       the run's Config
        checkpoints/ckpt_epoch_0007.pt    resumable state after 7 epochs (..._batch_000123.pt mid-epoch)
        checkpoints/best.pt               the state with the lowest FID so far (fid_every > 0)
        samples/epoch_0007.png            the fixed-noise grid after epoch 7 (frames of the GIF)
        generator.pt                      a small exported generator for sampling and latent walks
        grid.png losses.png d_outputs.png progress.gif    the report
        tensorboard/                      TensorBoard logs (on Colab they stay on the VM instead)
"""

from __future__ import annotations

import os
from pathlib import Path

from . import colab

# Files shipped inside the package (the pretrained generator, the FID classifier), not part of any run.
ASSETS = Path(__file__).resolve().parent / "assets"

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
CHECKPOINT_GLOB = "ckpt_epoch_*.pt"  # never matches temp files, which start with "."
BEST = "best.pt"
SAMPLES = "samples"
FRAME_GLOB = "epoch_*.png"
GENERATOR = "generator.pt"
GRID = "grid.png"
LOSSES = "losses.png"
D_OUTPUTS = "d_outputs.png"
PROGRESS_GIF = "progress.gif"


def open_run_dir(run_dir: str | os.PathLike) -> Path:
    """`run_dir` as a Path, mounting Google Drive first when it lies on Drive in a fresh Colab runtime."""
    return colab.ensure_drive(run_dir)


def config_path(run_dir: str | os.PathLike) -> Path:
    """The run's config.yaml."""
    return Path(run_dir) / CONFIG


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(run_dir) / CHECKPOINTS


def checkpoint_name(epoch: int, batch_in_epoch: int = 0) -> str:
    """The file name for a checkpoint taken after `epoch` epochs and `batch_in_epoch` more batches."""
    # Fixed widths keep lexicographic order chronological, which latest_checkpoint and pruning rely on.
    if not 0 <= epoch <= 9999 or not 0 <= batch_in_epoch <= 999_999:
        raise ValueError(
            f"need 0 <= epoch <= 9999 and 0 <= batch_in_epoch <= 999999, got {epoch}, {batch_in_epoch}"
        )
    if batch_in_epoch:
        return f"ckpt_epoch_{epoch:04d}_batch_{batch_in_epoch:06d}.pt"
    return f"ckpt_epoch_{epoch:04d}.pt"


def checkpoint_path(run_dir: str | os.PathLike, epoch: int, batch_in_epoch: int = 0) -> Path:
    """The checkpoint file for `epoch` (and `batch_in_epoch` more batches) in the run."""
    return checkpoint_dir(run_dir) / checkpoint_name(epoch, batch_in_epoch)


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's checkpoint files, oldest first (best.pt and temp files excluded)."""
    return sorted(checkpoint_dir(run_dir).glob(CHECKPOINT_GLOB))


def best_path(run_dir: str | os.PathLike) -> Path:
    """The checkpoint with the best FID so far."""
    return checkpoint_dir(run_dir) / BEST


def samples_dir(run_dir: str | os.PathLike) -> Path:
    """The folder of per-epoch sample grids."""
    return Path(run_dir) / SAMPLES


def frame_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """The fixed-noise sample grid written after `epoch`; zero padding keeps sorted frames in order."""
    return samples_dir(run_dir) / f"epoch_{epoch:04d}.png"


def frames(run_dir: str | os.PathLike) -> list[Path]:
    """The run's per-epoch sample grids, oldest first."""
    return sorted(samples_dir(run_dir).glob(FRAME_GLOB))


def generator_path(run_dir: str | os.PathLike) -> Path:
    """The default file for an exported generator."""
    return Path(run_dir) / GENERATOR


def grid_path(run_dir: str | os.PathLike) -> Path:
    """The report's sample grid."""
    return Path(run_dir) / GRID


def losses_path(run_dir: str | os.PathLike) -> Path:
    """The report's loss curves."""
    return Path(run_dir) / LOSSES


def d_outputs_path(run_dir: str | os.PathLike) -> Path:
    """The report's D(x) and D(G(z)) curves."""
    return Path(run_dir) / D_OUTPUTS


def progress_gif_path(run_dir: str | os.PathLike) -> Path:
    """The report's animation of the per-epoch frames."""
    return Path(run_dir) / PROGRESS_GIF


def tensorboard_dir(run_dir: str | os.PathLike) -> Path:
    """Where TensorBoard logs go: run_dir/tensorboard, or the VM's local disk on Colab (Drive syncs them badly)."""
    return colab.tensorboard_dir(run_dir)
