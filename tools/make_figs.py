"""Regenerate figs/ from a real training run: `python tools/make_figs.py [--run-dir DIR] [--epochs N] [--only W]
[--figs-dir DIR]`.

Trains (or resumes) the demo preset on mnist-5k with FID every epoch, then writes the sample grid, loss and
D-output curves, the progress GIF, lerp vs slerp interpolation grids, a vector-arithmetic grid and FID over
epochs into figs/, plus figs/run.json with the facts the README's captions quote. It also draws the named latent
directions of the shipped generator (the one notebook 05 and the sliders use by default) as figs/directions.png;
`--only directions` draws just that, without training.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from dcganlib import Config, Trainer, directions
from dcganlib.latent import interpolation_grid, vector_arithmetic
from dcganlib.metrics import classifier_probabilities
from dcganlib.models import generate, make_noise
from dcganlib.pretrained import load_generator
from dcganlib.viz import make_gif, plot_d_outputs, plot_directions, plot_losses, plot_metric, save_grid

FIGS = Path(__file__).resolve().parents[1] / "figs"  # --figs-dir writes elsewhere (the test does)


def digit_latents(generator, z_dim: int, digit: int, count: int, pool: int = 2000) -> torch.Tensor:
    """Latents whose samples the shipped classifier reads most confidently as `digit` (for the arithmetic)."""
    noise = make_noise(pool, z_dim, seed=4321)
    probabilities = classifier_probabilities(generate(generator, noise))
    return noise[probabilities[:, digit].topk(count).indices]


def directions_figure(figs: Path) -> None:
    """Notebook 05's directions (4 principal, towards 0, 1 and 7) of the shipped generator, swept from seed 0."""
    generator = load_generator()
    plot_directions(generator, directions.notebook_directions(generator), make_noise(1, generator.z_dim, seed=0),
                    path=figs / "directions.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", default="runs/figs")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--epochs", type=int, help="default: the preset's own")
    parser.add_argument("--only", choices=["directions"], help="draw only these figures, without training")
    parser.add_argument("--figs-dir", type=Path, default=FIGS, help="where the figures go (default: figs/)")
    args = parser.parse_args(argv)
    figs = args.figs_dir
    figs.mkdir(parents=True, exist_ok=True)
    directions_figure(figs)
    if args.only:
        return

    length = {"epochs": args.epochs} if args.epochs else {}
    config = Config.from_preset(args.preset, dataset="mnist-5k", eval_every=1, **length)
    trainer = Trainer(config, args.run_dir)
    started = time.monotonic()
    trainer.fit()
    seconds = time.monotonic() - started
    history, generator, z_dim = trainer.history, trainer.sampling_generator, config.z_dim

    save_grid(trainer.sample(), figs / "samples.png")
    plot_losses(history, figs / "losses.png")
    plot_d_outputs(history, figs / "d_outputs.png")
    plot_metric(history, "fid", figs / "fid.png", log_scale=True)
    make_gif(trainer.run, figs / "progress.gif", fps=3)
    starts, ends = make_noise(4, z_dim, seed=1), make_noise(4, z_dim, seed=2)
    for method in ("lerp", "slerp"):
        save_grid(interpolation_grid(generator, starts, ends, steps=10, method=method), figs / f"{method}.png", nrow=10)
    # "7 - 1 + 0": each term averages three latents, as the DCGAN paper does for faces.
    arithmetic = vector_arithmetic(generator, *(digit_latents(generator, z_dim, d, 3) for d in (7, 1, 0)))
    save_grid(arithmetic, figs / "arithmetic.png", nrow=4)
    facts = {"preset": args.preset, "dataset": "mnist-5k", "epochs": trainer.epoch, "steps": trainer.step,
             "device": str(trainer.device), "cpu": platform.processor() or platform.machine(),
             "train_seconds_this_call": round(seconds, 1),
             "epoch_seconds_total": round(sum(history["epoch"]["seconds"]), 1),
             "fid_by_epoch": [round(f, 1) for f in history["epoch"]["fid"] if f is not None],
             "ema_decay": config.ema_decay, "precision": config.precision}
    (figs / "run.json").write_text(json.dumps(facts, indent=2))
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
