"""Sample quality against wall-clock time, over seeds: the canonical PyTorch DCGAN loop vs dcganlib, on mnist-5k.

`python benchmarks/quality.py` trains each preset with the reference loop and with dcganlib (and any recipe
variants asked for) from several seeds, scoring offline FID (the shipped MNIST classifier's features, 1,000
samples vs the 1,000 held-out digits) after every epoch; scoring time is not training time. Each dcganlib run of
the library's defaults is also scored through its live generator ("no EMA") and through extra averaged copies
with other decays and without the warm-up: they follow the same training, so the EMA ablation costs no extra run.
It reports, per loop, the median FID and its range over seeds at equal epochs and at the reference's wall time,
writes the curves to results/quality-<machine>.json and draws them as FID against seconds, a median line and a
min-max band per loop (figs/quality_vs_time.png with --figure).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from dcganlib.config import PRESETS, Config
from dcganlib.data import load_mnist_5k
from dcganlib.ema import recalibrate, update_average, warmed_up_decay
from dcganlib.metrics import (
    classifier_features,
    kernel_inception_distance,
    mnist_5k_split,
    mode_coverage,
    offline_fid,
    precision_recall,
    real_reference,
    split_features,
)
from dcganlib.models import generate, make_noise
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.reference import ReferenceLoop  # noqa: E402
from benchmarks.speed import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURE = ROOT / "figs" / "quality_vs_time.png"
EPOCHS = {"demo": 15, "mnist28": 150}
# dcganlib's default variant trains on to the preset's own length (the demo's `make demo` run) in the same runs.
LIBRARY_EPOCHS = {"demo": PRESETS["demo"]["epochs"]}
SEEDS = (0, 1, 2)
SAMPLES = 1000
TARGET_EQUAL_EPOCHS, TARGET_EQUAL_TIME = 0.8, 0.5
REFERENCE = "reference"
# dcganlib's variants: Config overrides on top of the preset, one training run each. "dcganlib" is the defaults.
VARIANTS: dict[str, dict] = {
    "dcganlib": {},
    "fp32 NCHW": {"precision": "fp32", "channels_last": False},
}
# Generators scored alongside the defaults' EMA in the same run: (decay, warm-up, own BatchNorm statistics);
# decay 0 is the live generator. Without its own statistics an average samples with the live generator's: the
# ablation of the EMA generator's recalibration (dcganlib.ema.recalibrate).
EMA_PROBES: dict[str, tuple[float, bool, bool]] = {
    "no EMA": (0.0, False, False),
    "EMA 0.99": (0.99, True, True),
    "EMA 0.9999": (0.9999, True, True),
    "EMA 0.999 without warm-up": (0.999, False, True),
    "EMA with the live generator's statistics": (0.999, True, False),
}


class EmaProbes:
    """Averaged copies of a Trainer's generator with other decays, updated after each step as the Trainer's own.

    The Trainer's EMA decay is min(decay, (1 + step) / (10 + step)) (the warm-up); a probe without warm-up uses
    the decay from the first step, so it starts from the initial weights. Decay 0 is the live generator itself.
    A probe with its own statistics is recalibrated before it draws, as the Trainer's EMA generator is.
    """

    def __init__(self, trainer: Trainer, probes: dict[str, tuple[float, bool, bool]]):
        self.trainer = trainer
        self.copies = {name: (copy.deepcopy(trainer.generator).eval(), decay, warm_up, own_statistics)
                       for name, (decay, warm_up, own_statistics) in probes.items() if decay > 0}
        self.live = [name for name, (decay, _, _) in probes.items() if decay == 0]
        train_step = trainer.train_step

        def step_and_average(real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            stats = train_step(real, labels)
            self.update()
            return stats

        trainer.train_step = step_and_average

    def update(self) -> None:
        step = self.trainer.step  # the step counter moves on after train_step
        for average, decay, warm_up, _ in self.copies.values():
            update_average(average, self.trainer.generator, warmed_up_decay(decay, step) if warm_up else decay)

    def _draw(self, model: torch.nn.Module, own_statistics: bool, noise: torch.Tensor) -> torch.Tensor:
        if own_statistics:
            config = self.trainer.config
            recalibrate(model, config.seed, config.batch_size, config.seeding)
        return generate(model, noise)

    def samplers(self) -> dict:
        """name -> function from noise to images, for every probe."""
        found = {name: functools.partial(self._draw, model, own_statistics)
                 for name, (model, _, _, own_statistics) in self.copies.items()}
        found.update({name: lambda noise: generate(self.trainer.generator, noise) for name in self.live})
        return found


def score(images: torch.Tensor) -> dict:
    """Offline FID, KID and precision/recall against the held-out digits, and mode coverage, of `images` in
    [-1, 1]."""
    fid = offline_fid(images, reference=real_reference())
    coverage = mode_coverage(images)
    real, fake = split_features("heldout"), classifier_features(images)
    precision, recall = precision_recall(real, fake)
    return {"fid": round(fid.fid, 2), "kid": round(kernel_inception_distance(real, fake)[0], 4),
            "precision": round(precision, 3), "recall": round(recall, 3), "classes": coverage["classes_covered"],
            "entropy": round(coverage["entropy"], 3), "n_fake": fid.n_fake, "n_real": fid.n_real}


def floor() -> dict:
    """Real vs real: the 4,000 training digits against the 1,000 held out (and 1,000 vs 1,000)."""
    train, _ = mnist_5k_split("train")
    as_float = train.float().div(127.5).sub(1)
    # The split is sorted by label: every 4th image gives 1,000 with 100 of each digit.
    return {"train_4000": score(as_float), "train_1000": score(as_float[::4])}


def scored_curves(train_epoch, samplers: dict, noise: torch.Tensor, until, scored) -> dict[str, list[dict]]:
    """Train epoch by epoch while until(epochs done, seconds) is false, scoring each sampler after the epochs
    where scored(epoch) is true, and after the last."""
    points: dict[str, list[dict]] = {name: [] for name in samplers}
    epochs, seconds = 0, 0.0
    while not until(epochs, seconds):
        started = time.perf_counter()
        train_epoch()
        seconds += time.perf_counter() - started
        epochs += 1
        if scored(epochs) or until(epochs, seconds):
            for name, sample in samplers.items():
                points[name].append({"epoch": epochs, "seconds": round(seconds, 2), **score(sample(noise))})
    return points


def _every(every: int, *epochs: int):
    """Score every `every` epochs, and at each of `epochs`."""
    return lambda epoch: epoch % every == 0 or epoch in epochs


def reference_curve(config: Config, epochs: int, noise: torch.Tensor, every: int = 1) -> list[dict]:
    """The canonical loop's FID every `every` of `epochs` epochs."""
    loop = ReferenceLoop(config, load_mnist_5k()[0], seed=config.seed)
    return scored_curves(loop.train_epoch, {REFERENCE: loop.sample}, noise, lambda done, _seconds: done >= epochs,
                         _every(every))[REFERENCE]


def library_curves(config: Config, epochs: int, noise: torch.Tensor, min_seconds: float, name: str,
                   probes: dict[str, tuple[float, bool, bool]] | None = None, every: int = 1,
                   also_at: tuple[int, ...] = ()) -> dict[str, list[dict]]:
    """dcganlib's FID every `every` epochs (and at `also_at`), for `epochs` epochs and at least `min_seconds`.

    `name` is the curve of the Trainer's sampling generator; each probe adds the curve "<name>, <probe>".
    """
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
        samplers = {name: trainer.sample}
        if probes:
            probed = EmaProbes(trainer, probes).samplers()
            samplers.update({f"{name}, {probe}": sample for probe, sample in probed.items()})
        return scored_curves(lambda: trainer.fit(epochs=trainer.epoch + 1), samplers, noise,
                             lambda done, seconds: done >= epochs and seconds >= min_seconds,
                             _every(every, epochs, *also_at))


def at_time(curve: list[dict], seconds: float) -> dict:
    """The newest point trained within `seconds` (the first point when even that took longer)."""
    within = [point for point in curve if point["seconds"] <= seconds]
    return within[-1] if within else curve[0]


def at_epoch(curve: list[dict], epoch: int) -> dict:
    """The point scored after `epoch` epochs."""
    return next(point for point in curve if point["epoch"] == epoch)


def seed_curves(preset: str, epochs: int, seed: int, variants=("dcganlib",), probes=EMA_PROBES,
                library_epochs: int | None = None, every: int = 1, threads: int | None = None,
                **overrides) -> dict[str, list[dict]]:
    """One seed's curves: the reference's, then each variant's (see compare)."""
    if threads:
        torch.set_num_threads(threads)
    library_epochs = max(epochs, library_epochs or epochs)
    base = {"dataset": "mnist-5k", "seed": seed, "epochs": epochs, **overrides}
    config = Config.from_preset(preset, **base)
    noise = make_noise(SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(seed + 1234))
    curves = {REFERENCE: reference_curve(config, epochs, noise, every)}
    reference_seconds = curves[REFERENCE][-1]["seconds"]
    for index, name in enumerate(variants):
        config = Config.from_preset(preset, **base, **VARIANTS[name])
        curves.update(library_curves(config, library_epochs if index == 0 else epochs, noise, reference_seconds, name,
                                     probes if index == 0 else None, every, also_at=(epochs,)))
    return curves


def map_over_processes(work, items, jobs: int = 1) -> list:
    """`work(item)` for every item, in order: here when jobs is 1, else in `jobs` spawned processes at once, each
    called with `threads=`, its equal share of the cores."""
    if jobs <= 1:
        return [work(item) for item in items]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(functools.partial(work, threads=threads), items))


def compare(preset: str, epochs: int, seeds=SEEDS, variants=("dcganlib",), probes=EMA_PROBES,
            library_epochs: int | None = None, every: int = 1, jobs: int = 1, **overrides) -> dict:
    """Curves per seed for the reference and each dcganlib variant; dcganlib trains at least the reference's time.

    The first variant's runs go on to `library_epochs` when that is more, and are also scored through `probes`
    (see EmaProbes). Scores are taken every `every` epochs and at the end. jobs > 1 runs that many seeds at
    once, each in a process of its own with an equal share of the cores.
    """
    library_epochs = max(epochs, library_epochs or epochs)
    arguments = {"variants": variants, "probes": probes, "library_epochs": library_epochs, "every": every, **overrides}
    per_seed = map_over_processes(functools.partial(seed_curves, preset, epochs, **arguments), seeds, jobs)
    curves: dict[str, list[list[dict]]] = {}
    for found in per_seed:
        for name, curve in found.items():
            curves.setdefault(name, []).append(curve)
    return {"preset": preset, "epochs": epochs, "library_epochs": library_epochs, "seeds": list(seeds),
            "variants": list(variants), "curves": curves, "summary": summarise(curves, epochs, library_epochs)}


SCORED = ("fid", "kid", "precision", "recall")  # a point's scores; results written before KID lack the last three


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def summarise(curves: dict[str, list[list[dict]]], epochs: int, library_epochs: int | None = None) -> dict:
    """Per loop: FID at `epochs` and at the reference's wall time (median and range over seeds), ratios.

    Equal time pairs runs by seed: each run at the time its own seed's reference took for `epochs` epochs. Loops
    that trained `library_epochs` also get "final": FID, classes and seconds at that epoch.
    """
    reference_seconds = [at_epoch(curve, epochs)["seconds"] for curve in curves[REFERENCE]]
    summary = {}
    for name, runs in curves.items():
        at_epochs = [at_epoch(curve, epochs) for curve in runs]
        at_reference_time = [at_time(curve, seconds) for curve, seconds in zip(runs, reference_seconds, strict=True)]
        summary[name] = {**{key: spread([p[key] for p in at_epochs]) for key in SCORED if key in at_epochs[0]},
                         "classes": spread([p["classes"] for p in at_epochs]),
                         "seconds": spread([p["seconds"] for p in at_epochs]),
                         "equal_time_fid": spread([p["fid"] for p in at_reference_time]),
                         "equal_time_epochs": spread([p["epoch"] for p in at_reference_time])}
        if library_epochs and library_epochs > epochs and all(curve[-1]["epoch"] >= library_epochs for curve in runs):
            final = [at_epoch(curve, library_epochs) for curve in runs]
            summary[name]["final"] = {key: spread([p[key] for p in final]) for key in ("fid", "classes", "seconds")}
    reference = summary[REFERENCE]
    for row in summary.values():
        row["ratio_equal_epochs"] = round(row["fid"]["median"] / reference["fid"]["median"], 3)
        row["ratio_equal_time"] = round(row["equal_time_fid"]["median"] / reference["fid"]["median"], 3)
    return summary


def plot(report: dict, path: Path) -> Path:
    """FID against training seconds, one panel per preset: each loop's median over seeds and its min-max band."""
    rows = report["rows"]  # the probes share their run's time axis: only the loops themselves are drawn
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for name in (REFERENCE, *row["variants"]):
            draw_median_and_range(ax, row["curves"][name], "fid", name)
        ax.set(title=f"{row['preset']} on mnist-5k", xlabel="training seconds (this machine)",
               ylabel="offline FID (lower is better)", yscale="log")
    return save_figure(fig, path)


def draw_median_and_range(ax, runs: list[list[dict]], key: str, name: str, color: str | None = None) -> None:
    """`key` against training seconds: the median over the runs (one per seed) as a line, their range as a band."""
    length = min(len(run) for run in runs)
    seconds = np.median([[p["seconds"] for p in run[:length]] for run in runs], axis=0)
    values = np.array([[p[key] for p in run[:length]] for run in runs])
    (line,) = ax.plot(seconds, np.median(values, axis=0), marker=".", color=color,
                      label=f"{name} (median of {len(runs)})")
    ax.fill_between(seconds, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def save_figure(fig, path: Path) -> Path:
    """Grids and legends on every panel, then the figure written to `path` and closed."""
    for ax in fig.axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cell(spread: dict) -> str:
    return f"{spread['median']} [{spread['min']}–{spread['max']}]"


def markdown(report: dict) -> str:
    """The README table: medians over seeds with [min–max]."""
    machine = report["machine"]
    lines = [f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}. FID: offline, "
             f"{SAMPLES} generated vs the 1,000 held-out mnist-5k digits, features of the shipped MNIST classifier; "
             "lower is better (KID too; precision and recall: higher). Median over seeds [min–max].", "",
             "| preset | epochs | seeds | loop | FID at equal epochs | KID | precision | recall | classes | "
             "training s | ratio | FID at the reference's time (epochs) | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for name, s in row["summary"].items():
            kid, precision, recall = (cell(s[key]) if key in s else "" for key in ("kid", "precision", "recall"))
            lines.append(f"| {row['preset']} | {row['epochs']} | {len(row['seeds'])} | {name} | {cell(s['fid'])} | "
                         f"{kid} | {precision} | {recall} | {cell(s['classes'])} | {cell(s['seconds'])} | "
                         f"{s['ratio_equal_epochs']} | {cell(s['equal_time_fid'])} "
                         f"({s['equal_time_epochs']['median']}) | {s['ratio_equal_time']} |")
    for row in report["rows"]:
        finals = {name: s["final"] for name, s in row["summary"].items() if "final" in s}
        if finals:
            lines += ["", f"dcganlib trained on to {row['library_epochs']} epochs ({row['preset']}, same runs):", "",
                      "| loop | FID | classes | training s |", "|---|---|---|---|"]
            lines += [f"| {name} | {cell(f['fid'])} | {cell(f['classes'])} | {cell(f['seconds'])} |"
                      for name, f in finals.items()]
    f4000, f1000 = report["floor"]["train_4000"], report["floor"]["train_1000"]
    lines += ["", f"Real-vs-real floor: train split vs held-out FID {f4000['fid']} (4,000 vs 1,000), "
              f"{f1000['fid']} (1,000 vs 1,000). Targets: ratio ≤ {TARGET_EQUAL_EPOCHS} at equal epochs, "
              f"≤ {TARGET_EQUAL_TIME} at equal wall time."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="*", default=list(EPOCHS), choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="override the per-preset epoch counts")
    parser.add_argument("--library-epochs", type=int, help="train dcganlib's first variant on to this many epochs")
    parser.add_argument("--every", type=int, default=1, help="score every this many epochs (and at the end)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, each in its own process")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--variants", nargs="*", default=["dcganlib"], choices=sorted(VARIANTS),
                        help="training variants; the first is also scored with every EMA probe")
    parser.add_argument("--figure", action="store_true", help="also draw figs/quality_vs_time.png")
    parser.add_argument("--out", type=Path, help="JSON path (default results/quality-<machine>.json)")
    parser.add_argument("--from-json", type=Path, nargs="+", metavar="REPORT",
                        help="train nothing: print the tables (and --figure) of these saved reports' rows together")
    args = parser.parse_args(argv)
    if args.from_json:
        reports = [json.loads(path.read_text()) for path in args.from_json]
        report = {**reports[0], "rows": [row for saved in reports for row in saved["rows"]]}
        for row in report["rows"]:  # summarised again: a report saved by an older version reads the same
            row["summary"] = summarise(row["curves"], row["epochs"], row.get("library_epochs"))
        print(markdown(report))
        if args.figure:
            print(f"wrote {plot(report, FIGURE)}")
        return
    machine = machine_info(torch.device("cpu"))
    report = {"machine": machine, "floor": floor(), "rows": []}
    for preset in args.presets:
        epochs = args.epochs or EPOCHS.get(preset, 4)
        report["rows"].append(compare(preset, epochs, args.seeds, args.variants,
                                      library_epochs=args.library_epochs or LIBRARY_EPOCHS.get(preset),
                                      every=args.every, jobs=args.jobs))
        print(json.dumps(report["rows"][-1]["summary"]), flush=True)
    print(markdown(report))
    out = args.out or RESULTS_DIR / f"quality-{machine['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    if args.figure:
        print(f"wrote {plot(report, FIGURE)}")


if __name__ == "__main__":
    main()
