"""Sample quality against wall-clock time, over seeds: the canonical PyTorch DCGAN loop vs dcganlib, on mnist-5k.

`python benchmarks/quality.py` trains each preset with the reference loop and with dcganlib (and any recipe
variants asked for) from several seeds, scoring offline FID (the shipped MNIST classifier's features, 1,000
samples vs the 1,000 held-out digits) after every epoch; scoring time is not training time. It reports, per loop,
the median FID and its range over seeds at equal epochs and at the reference's wall time, writes the curves to
results/quality-<machine>.json and draws them as FID against seconds, a median line and a min-max band per loop
(figs/quality_vs_time.png with --figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from dcganlib.config import PRESETS, Config
from dcganlib.data import load_mnist_5k
from dcganlib.metrics import mnist_5k_split, mode_coverage, offline_fid, real_reference
from dcganlib.models import make_noise
from dcganlib.train import Trainer

if __package__:  # imported as benchmarks.quality (the tests)
    from .reference import ReferenceLoop
    from .speed import machine_info
else:  # run as a script: benchmarks/ is on sys.path
    from reference import ReferenceLoop
    from speed import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURE = ROOT / "figs" / "quality_vs_time.png"
EPOCHS = {"mnist28": 40, "mnist32": 12}
SEEDS = (0, 1, 2)
SAMPLES = 1000
TARGET_EQUAL_EPOCHS, TARGET_EQUAL_TIME = 0.8, 0.5
REFERENCE = "reference"
# dcganlib's variants: Config overrides on top of the preset. "dcganlib" is the library's defaults.
VARIANTS: dict[str, dict] = {
    "dcganlib": {},
    "fp32 NCHW": {"precision": "fp32", "channels_last": False},
    "no EMA": {"ema_decay": 0.0},
}


def score(images: torch.Tensor) -> dict:
    """Offline FID against the held-out digits and mode coverage of `images` in [-1, 1]."""
    fid = offline_fid(images, reference=real_reference())
    coverage = mode_coverage(images)
    return {"fid": round(fid.fid, 2), "classes": coverage["classes_covered"],
            "entropy": round(coverage["entropy"], 3), "n_fake": fid.n_fake, "n_real": fid.n_real}


def floor() -> dict:
    """Real vs real: the 4,000 training digits against the 1,000 held out (and 1,000 vs 1,000)."""
    train, _ = mnist_5k_split("train")
    as_float = train.float().div(127.5).sub(1)
    # The split is sorted by label: every 4th image gives 1,000 with 100 of each digit.
    return {"train_4000": score(as_float), "train_1000": score(as_float[::4])}


def _curve(train_epoch, sample, noise: torch.Tensor, until) -> list[dict]:
    """Train epoch by epoch while until(epochs done, seconds) is false, scoring after each; one point per epoch."""
    points, seconds = [], 0.0
    while not until(len(points), seconds):
        started = time.perf_counter()
        train_epoch()
        seconds += time.perf_counter() - started
        points.append({"epoch": len(points) + 1, "seconds": round(seconds, 2), **score(sample(noise))})
    return points


def reference_curve(config: Config, epochs: int, noise: torch.Tensor) -> list[dict]:
    """The canonical loop's FID after each of `epochs` epochs."""
    loop = ReferenceLoop(config, load_mnist_5k()[0], seed=config.seed)
    return _curve(loop.train_epoch, loop.sample, noise, lambda done, _seconds: done >= epochs)


def library_curve(config: Config, epochs: int, noise: torch.Tensor, min_seconds: float) -> list[dict]:
    """dcganlib's FID after each epoch, for `epochs` epochs and at least `min_seconds` of training."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
        return _curve(lambda: trainer.fit(epochs=trainer.epoch + 1), trainer.sample, noise,
                      lambda done, seconds: done >= epochs and seconds >= min_seconds)


def at_time(curve: list[dict], seconds: float) -> dict:
    """The newest point trained within `seconds` (the first point when even that took longer)."""
    within = [point for point in curve if point["seconds"] <= seconds]
    return within[-1] if within else curve[0]


def compare(preset: str, epochs: int, seeds=SEEDS, variants=("dcganlib",), **overrides) -> dict:
    """Curves per seed for the reference and each dcganlib variant; dcganlib trains at least the reference's time."""
    curves: dict[str, list[list[dict]]] = {REFERENCE: [], **{name: [] for name in variants}}
    for seed in seeds:
        base = {"dataset": "mnist-5k", "seed": seed, "epochs": epochs, **overrides}
        config = Config.from_preset(preset, **base)
        noise = make_noise(SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(seed + 1234))
        curves[REFERENCE].append(reference_curve(config, epochs, noise))
        reference_seconds = curves[REFERENCE][-1][-1]["seconds"]
        for name in variants:
            config = Config.from_preset(preset, **base, **VARIANTS[name])
            curves[name].append(library_curve(config, epochs, noise, reference_seconds))
    return {"preset": preset, "epochs": epochs, "seeds": list(seeds), "curves": curves,
            "summary": summarise(curves, epochs)}


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def summarise(curves: dict[str, list[list[dict]]], epochs: int) -> dict:
    """Per loop: FID at `epochs` and at the reference's median wall time (median and range over seeds), ratios."""
    reference_seconds = statistics.median(curve[epochs - 1]["seconds"] for curve in curves[REFERENCE])
    summary = {}
    for name, runs in curves.items():
        at_epochs = [curve[epochs - 1] for curve in runs]
        at_reference_time = [at_time(curve, reference_seconds) for curve in runs]
        summary[name] = {"fid": _spread([p["fid"] for p in at_epochs]),
                         "classes": _spread([p["classes"] for p in at_epochs]),
                         "seconds": _spread([p["seconds"] for p in at_epochs]),
                         "equal_time_fid": _spread([p["fid"] for p in at_reference_time]),
                         "equal_time_epochs": _spread([p["epoch"] for p in at_reference_time])}
    reference = summary[REFERENCE]
    for row in summary.values():
        row["ratio_equal_epochs"] = round(row["fid"]["median"] / reference["fid"]["median"], 3)
        row["ratio_equal_time"] = round(row["equal_time_fid"]["median"] / reference["fid"]["median"], 3)
    return summary


def plot(report: dict, path: Path) -> Path:
    """FID against training seconds, one panel per preset: each loop's median over seeds and its min-max band."""
    rows = report["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for name, runs in row["curves"].items():
            length = min(len(curve) for curve in runs)
            seconds = np.median([[p["seconds"] for p in curve[:length]] for curve in runs], axis=0)
            fids = np.array([[p["fid"] for p in curve[:length]] for curve in runs])
            (line,) = ax.plot(seconds, np.median(fids, axis=0), marker=".", label=f"{name} (median of {len(runs)})")
            ax.fill_between(seconds, fids.min(axis=0), fids.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set(title=f"{row['preset']} on mnist-5k", xlabel="training seconds (this machine)",
               ylabel="offline FID (lower is better)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cell(spread: dict) -> str:
    return f"{spread['median']} [{spread['min']}–{spread['max']}]"


def markdown(report: dict) -> str:
    """The README table: medians over seeds with [min–max]."""
    machine = report["machine"]
    lines = [f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}. FID: offline, "
             f"{SAMPLES} generated vs the 1,000 held-out mnist-5k digits, features of the shipped MNIST classifier; "
             "lower is better. Median over seeds [min–max].", "",
             "| preset | epochs | seeds | loop | FID at equal epochs | classes | training s | ratio | "
             "FID at the reference's time (epochs) | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for name, s in row["summary"].items():
            lines.append(f"| {row['preset']} | {row['epochs']} | {len(row['seeds'])} | {name} | {_cell(s['fid'])} | "
                         f"{_cell(s['classes'])} | {_cell(s['seconds'])} | {s['ratio_equal_epochs']} | "
                         f"{_cell(s['equal_time_fid'])} ({s['equal_time_epochs']['median']}) | "
                         f"{s['ratio_equal_time']} |")
    f4000, f1000 = report["floor"]["train_4000"], report["floor"]["train_1000"]
    lines += ["", f"Real-vs-real floor: train split vs held-out FID {f4000['fid']} (4,000 vs 1,000), "
              f"{f1000['fid']} (1,000 vs 1,000). Targets: ratio ≤ {TARGET_EQUAL_EPOCHS} at equal epochs, "
              f"≤ {TARGET_EQUAL_TIME} at equal wall time."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="*", default=list(EPOCHS), choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="override the per-preset epoch counts")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--variants", nargs="*", default=["dcganlib"], choices=sorted(VARIANTS))
    parser.add_argument("--figure", action="store_true", help=f"also draw {FIGURE.relative_to(ROOT)}")
    parser.add_argument("--out", type=Path, help="JSON path (default results/quality-<machine>.json)")
    args = parser.parse_args(argv)
    machine = machine_info(torch.device("cpu"))
    report = {"machine": machine, "floor": floor(), "rows": []}
    for preset in args.presets:
        report["rows"].append(compare(preset, args.epochs or EPOCHS.get(preset, 4), args.seeds, args.variants))
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
