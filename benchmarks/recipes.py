"""The recipes where they are meant to matter: a user-style folder of a few hundred images, over seeds.

`python benchmarks/recipes.py` writes COUNT digits (an equal number of each, from the classifier's 4,000-image
training split, so the held-out digits stay unseen) as PNG files into a temporary folder, trains the demo preset
on `folder:<that folder>` from each seed with each recipe, and scores offline FID (1,000 samples of the EMA
generator vs the 1,000 held-out digits) every SCORE_EVERY epochs. It prints a Markdown table (median [min-max]
over seeds) and writes results/recipes-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torchvision.utils import save_image

from dcganlib.config import Config
from dcganlib.metrics import mnist_5k_split
from dcganlib.models import make_noise
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.quality import SAMPLES, SEEDS, cell, scored_curves, spread  # noqa: E402
from benchmarks.speed import machine_info  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COUNT, EPOCHS, SCORE_EVERY = 500, 135, 15  # 500 images at batch 32: 15 updates an epoch, ~2,000 in all
RECIPES: dict[str, dict] = {
    "demo": {},
    "DiffAugment": {"augment": "translation,cutout"},
    "spectral norm": {"spectral_norm": True},
}


def write_folder(folder: Path, count: int = COUNT) -> Path:
    """`count` training-split digits, count / 10 of each, as PNG files in class subfolders of `folder`."""
    images, labels = mnist_5k_split("train")
    if count % 10:
        raise ValueError(f"count {count} must be a multiple of 10 (the same number of each digit)")
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images[labels == digit][: count // 10]):
            save_image(image.float() / 255, folder / str(digit) / f"{index:04d}.png")
    return folder


def curve(folder: Path, seed: int, recipe: dict, epochs: int, every: int) -> list[dict]:
    """The EMA generator's scores every `every` epochs of the demo preset on `folder`, with training seconds."""
    config = Config.from_preset("demo", dataset=f"folder:{folder}", seed=seed, epochs=epochs, **recipe)
    noise = make_noise(SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(seed + 1234))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
        points = scored_curves(lambda: trainer.fit(epochs=trainer.epoch + 1), {"EMA": trainer.sample}, noise,
                               lambda done, _seconds: done >= epochs, lambda epoch: epoch % every == 0)["EMA"]
    return [{"epoch": point["epoch"], "steps": point["epoch"] * len(trainer.loader), **point} for point in points]


def compare(folder: Path, seeds=SEEDS, recipes=tuple(RECIPES), epochs: int = EPOCHS, every: int = SCORE_EVERY) -> dict:
    """Curves per recipe and seed, and per recipe the median and range of the last and of the best score."""
    curves = {name: [curve(folder, seed, RECIPES[name], epochs, every) for seed in seeds] for name in recipes}
    summary = {}
    for name, runs in curves.items():
        last = [run[-1] for run in runs]
        summary[name] = {"fid": spread([p["fid"] for p in last]), "classes": spread([p["classes"] for p in last]),
                         "best_fid": spread([min(p["fid"] for p in run) for run in runs]),
                         "seconds": spread([p["seconds"] for p in last])}
    return {"count": len(list(folder.rglob("*.png"))), "epochs": epochs, "seeds": list(seeds), "curves": curves,
            "summary": summary}


def markdown(report: dict) -> str:
    row = report["result"]
    steps = row["curves"][next(iter(row["curves"]))][0][-1]["steps"]
    lines = [f"{row['count']} digits in a folder, the demo preset for {row['epochs']} epochs ({steps} updates), "
             f"seeds {row['seeds']}; offline FID of {SAMPLES} EMA samples vs the held-out digits, median [min–max]. "
             f"Machine: {report['machine']['cpu']}.", "",
             "| recipe | FID at the end | best FID on the way | classes | training s |", "|---|---|---|---|---|"]
    for name, s in row["summary"].items():
        lines.append(f"| {name} | {cell(s['fid'])} | {cell(s['best_fid'])} | {cell(s['classes'])} | "
                     f"{cell(s['seconds'])} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=COUNT, help="digits in the folder (a multiple of 10)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--every", type=int, default=SCORE_EVERY, help="score every this many epochs")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", type=Path, help="JSON path (default results/recipes-<machine>.json)")
    args = parser.parse_args(argv)
    machine = machine_info(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as folder:
        result = compare(write_folder(Path(folder), args.count), args.seeds, args.recipes, args.epochs, args.every)
    report = {"machine": machine, "result": result}
    print(markdown(report))
    out = args.out or RESULTS_DIR / f"recipes-{machine['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
