"""The conditional DCGAN against the unconditional demo, over seeds, on mnist-5k: quality, class accuracy, time.

`python benchmarks/conditional.py` trains, from each seed, the unconditional `demo` preset, the conditional demo
(`Config.conditional()`: conditional BatchNorm in G, a projection D with an auxiliary classifier, D 32 wide), and
one alternative conditioning, the label as a learned 10-d embedding joined to z in an otherwise unconditional G
(same D). Every few epochs it scores the sampling generator with quality.py's scores (offline FID of 1,000 samples
against the 1,000 held-out digits, classes covered) and, for the conditional nets, the shipped classifier's
accuracy on 100 generated digits of each requested class. It reports medians over seeds [min-max] at equal epochs
and at the unconditional demo's wall time, writes results/conditional-<machine>.json and, with --figure,
figs/conditional_vs_time.png.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import matplotlib.pyplot as plt
import torch
from torch import nn

from dcganlib import models
from dcganlib.config import Config
from dcganlib.metrics import classifier_probabilities
from dcganlib.models import Generator, make_noise
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.quality import (  # noqa: E402
    SAMPLES,
    SEEDS,
    at_epoch,
    at_time,
    cell,
    draw_median_and_range,
    map_over_processes,
    save_figure,
    score,
)
from benchmarks.speed import machine_info  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURE = Path(__file__).resolve().parents[1] / "figs" / "conditional_vs_time.png"
UNCONDITIONAL, CONDITIONAL, ALTERNATIVE = "demo", "conditional demo", "label joined to z"
NETS = (UNCONDITIONAL, CONDITIONAL, ALTERNATIVE)
EPOCHS = 55  # the demo preset's length
EMBEDDING = 10  # the alternative's label embedding, joined to z
TARGET_ACCURACY = 0.95


class LabelJoinedToZ(Generator):
    """The alternative conditioning: an unconditional G whose input is z with a learned label embedding joined."""

    def __init__(self, z_dim, channels, features, image_size, batch_norm, num_classes):
        super().__init__(z_dim + EMBEDDING, channels, features, image_size, batch_norm)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.class_names = tuple(str(label) for label in range(num_classes))
        self.embedding = nn.Embedding(num_classes, EMBEDDING)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z.reshape(len(z), -1, 1, 1), self.embedding(labels)[:, :, None, None]], 1))


def _alternative_generator(values) -> Generator:
    values = values.to_dict() if isinstance(values, Config) else values
    return LabelJoinedToZ(values["z_dim"], values["channels"], values["g_features"], values["image_size"],
                          values["batch_norm"], values["num_classes"])


def config_for(net: str, seed: int, epochs: int) -> Config:
    """The preset behind each net, for one seed."""
    config = Config.from_preset("demo", dataset="mnist-5k", seed=seed, epochs=epochs)
    return config if net == UNCONDITIONAL else config.conditional()


def conditional_score(images: torch.Tensor) -> dict:
    """quality.score, plus the classifier's accuracy per requested class (images drawn for labels 0, 1, ..., 9, 0)."""
    labels = torch.arange(len(images)) % 10
    predicted = classifier_probabilities(images).argmax(1)
    accuracy = [round((predicted[labels == k] == k).float().mean().item(), 3) for k in range(10)]
    return {**score(images), "accuracy": accuracy, "accuracy_min": min(accuracy),
            "accuracy_mean": round(sum(accuracy) / 10, 3)}


def curve(net: str, seed: int, epochs: int, min_seconds: float, every: int) -> list[dict]:
    """One net's scores every `every` epochs (and at the end), trained for `epochs` epochs and `min_seconds`."""
    config = config_for(net, seed, epochs)
    noise = make_noise(SAMPLES, config.z_dim, seed=seed + 1234)
    alternative = mock.patch.object(models, "generator_for", _alternative_generator)
    with tempfile.TemporaryDirectory() as run_dir:
        with alternative if net == ALTERNATIVE else contextlib.nullcontext():
            trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
        if net == UNCONDITIONAL:
            return _train_and_score(trainer, lambda: score(trainer.sample(noise)), epochs, min_seconds, every)
        labels = torch.arange(SAMPLES) % 10
        return _train_and_score(trainer, lambda: conditional_score(trainer.sample(noise, labels)), epochs,
                                min_seconds, every)


def _train_and_score(trainer: Trainer, scores, epochs: int, min_seconds: float, every: int) -> list[dict]:
    """Train epoch by epoch until `epochs` epochs and `min_seconds` of training, with `scores()` every `every`
    epochs and after the last; the scoring time is not training time."""
    points, seconds = [], 0.0
    while trainer.epoch < epochs or seconds < min_seconds:
        started = time.perf_counter()
        trainer.fit(epochs=trainer.epoch + 1)
        seconds += time.perf_counter() - started
        last = trainer.epoch >= epochs and seconds >= min_seconds
        if trainer.epoch % every == 0 or trainer.epoch == epochs or last:
            points.append({"epoch": trainer.epoch, "seconds": round(seconds, 2), **scores()})
    return points


def seed_curves(seed: int, epochs: int, every: int, threads: int | None = None) -> dict[str, list[dict]]:
    """One seed's curves: the unconditional demo's first, then the conditional nets for at least its time."""
    if threads:
        torch.set_num_threads(threads)
    curves = {UNCONDITIONAL: curve(UNCONDITIONAL, seed, epochs, 0.0, every)}
    seconds = at_epoch(curves[UNCONDITIONAL], epochs)["seconds"]
    for net in (CONDITIONAL, ALTERNATIVE):
        curves[net] = curve(net, seed, epochs, seconds, every)
    return curves


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def summarise(curves: dict[str, list[list[dict]]], epochs: int) -> dict:
    """Per net: the scores at `epochs` and at the unconditional demo's time for the same seed (median, range)."""
    times = [at_epoch(run, epochs)["seconds"] for run in curves[UNCONDITIONAL]]
    keys = ("fid", "classes", "seconds", "accuracy_min", "accuracy_mean")
    summary = {}
    for net, runs in curves.items():
        at_epochs = [at_epoch(run, epochs) for run in runs]
        at_times = [at_time(run, seconds) for run, seconds in zip(runs, times, strict=True)]
        summary[net] = {"equal_epochs": {key: spread([p[key] for p in at_epochs]) for key in keys if key in
                                         at_epochs[0]},
                        "equal_time": {key: spread([p[key] for p in at_times]) for key in (*keys, "epoch") if key in
                                       at_times[0]}}
        if "accuracy" in at_epochs[0]:
            summary[net]["accuracy_per_class"] = [statistics.median(p["accuracy"][k] for p in at_epochs)
                                                  for k in range(10)]
    return summary


def compare(epochs: int = EPOCHS, seeds=SEEDS, every: int = 5, jobs: int = 1) -> dict:
    """Curves per seed for every net, and their summary."""
    per_seed = map_over_processes(functools.partial(seed_curves, epochs=epochs, every=every), seeds, jobs)
    curves = {net: [found[net] for found in per_seed] for net in NETS}
    return {"epochs": epochs, "seeds": list(seeds), "curves": curves, "summary": summarise(curves, epochs)}


def markdown(report: dict) -> str:
    """The README table: medians over seeds [min-max]."""
    machine, epochs = report["machine"], report["epochs"]
    lines = [f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}. FID: offline, "
             f"{SAMPLES} generated vs the 1,000 held-out mnist-5k digits; accuracy: the shipped classifier on 100 "
             f"generated digits of each requested class. Median over {len(report['seeds'])} seeds [min–max].", "",
             f"| net | FID at {epochs} epochs | classes | lowest class accuracy | mean accuracy | training s | "
             "FID at the demo's time (epochs) | lowest class accuracy then |", "|---|---|---|---|---|---|---|---|"]
    for net, s in report["summary"].items():
        e, t = s["equal_epochs"], s["equal_time"]
        lines.append(f"| {net} | {cell(e['fid'])} | {cell(e['classes'])} | {accuracy(e, 'accuracy_min')} | "
                     f"{accuracy(e, 'accuracy_mean')} | {cell(e['seconds'])} | {cell(t['fid'])} "
                     f"({t['epoch']['median']}) | {accuracy(t, 'accuracy_min')} |")
    per_class = report["summary"][CONDITIONAL]["accuracy_per_class"]
    lines += ["", f"Conditional demo at {epochs} epochs, median accuracy per requested digit: "
              + ", ".join(f"{k}: {a:.0%}" for k, a in enumerate(per_class))
              + f". Target: every class ≥ {TARGET_ACCURACY:.0%}."]
    return "\n".join(lines)


def accuracy(scores: dict, key: str) -> str:
    """A table cell for an accuracy the unconditional net has none of."""
    return cell(scores[key]) if key in scores else "–"


def plot(report: dict, path: Path) -> Path:
    """FID and the lowest class accuracy against training seconds: each net's median over seeds and its range."""
    fig, (ax_fid, ax_accuracy) = plt.subplots(1, 2, figsize=(12, 4.2))
    for index, (net, runs) in enumerate(report["curves"].items()):
        draw_median_and_range(ax_fid, runs, "fid", net, color=f"C{index}")  # one colour per net in both panels
        if "accuracy_min" in runs[0][0]:
            draw_median_and_range(ax_accuracy, runs, "accuracy_min", net, color=f"C{index}")
    ax_fid.set(title="offline FID (lower is better)", xlabel="training seconds (this machine)", yscale="log")
    ax_accuracy.set(title="lowest accuracy of any requested digit", xlabel="training seconds (this machine)",
                    ylim=(0, 1.02))
    ax_accuracy.axhline(TARGET_ACCURACY, color="gray", ls="--", lw=1)
    return save_figure(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--every", type=int, default=5, help="score every this many epochs (and at the end)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, each in its own process")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--figure", action="store_true", help="also draw figs/conditional_vs_time.png")
    parser.add_argument("--out", type=Path, help="JSON path (default results/conditional-<machine>.json)")
    parser.add_argument("--from-json", type=Path, metavar="REPORT", help="train nothing: tabulate a saved report")
    args = parser.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = {"machine": machine_info(torch.device("cpu")), **compare(args.epochs, args.seeds, args.every,
                                                                          args.jobs)}
        out = args.out or RESULTS_DIR / f"conditional-{report['machine']['slug']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    print(markdown(report))
    if args.figure:
        print(f"wrote {plot(report, FIGURE)}")


if __name__ == "__main__":
    main()
