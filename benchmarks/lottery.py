"""How reliably a preset leaves the grey-blob phase: one run per seed and precision, its classes after every epoch.

`python benchmarks/lottery.py` trains the demo preset on mnist-5k from each seed (0-9) in each precision (bf16, fp32)
for 20 epochs, one thread per run and JOBS runs at once. After every epoch it counts the classes the shipped MNIST
classifier finds among the EMA generator's samples of 1,000 fixed probe latents; a run exits the blob phase at the
first epoch that draws all ten. At the end, and at any epoch `--fid-at` names, it scores offline FID (1,000 samples
vs the held-out digits). It prints, per precision, when the runs exit and their FID, and writes
results/lottery-<name>-<machine>.json. Options such as `--augment translation,cutout` measure a candidate recipe on
the same seeds (`--name` labels it).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

import torch

from dcganlib.config import PRESETS, Config
from dcganlib.metrics import mode_coverage, offline_fid
from dcganlib.models import make_noise
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.quality import cell, map_over_processes, spread  # noqa: E402
from benchmarks.speed import machine_info  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEEDS, PRECISIONS, EPOCHS = tuple(range(10)), ("bf16", "fp32"), 20
SAMPLES, ALL_CLASSES = 1000, 10
PROBE_SEED, FID_SEED = 0, 1


def exit_epoch(classes: list[int]) -> int | None:
    """The first epoch (1-based) whose samples draw every class, or None if no epoch does."""
    return next((epoch for epoch, count in enumerate(classes, start=1) if count == ALL_CLASSES), None)


def run(preset: str, epochs: int, seed_and_precision: tuple[int, str], threads: int | None = None,
        fid_at: tuple[int, ...] = (), **overrides) -> dict:
    """One training run: the classes drawn after every epoch, the exit epoch, and FID at `fid_at` and the end."""
    if threads:
        torch.set_num_threads(threads)
    seed, precision = seed_and_precision
    config = Config.from_preset(preset, **{"dataset": "mnist-5k", **overrides}, seed=seed, precision=precision,
                                epochs=epochs)
    probe, scored = make_noise(SAMPLES, config.z_dim, seed=PROBE_SEED), make_noise(SAMPLES, config.z_dim, seed=FID_SEED)
    classes: list[int] = []
    fid: dict[str, float] = {}

    def measure(trainer: Trainer) -> None:
        classes.append(mode_coverage(trainer.sample(probe))["classes_covered"])
        if trainer.epoch in fid_at or trainer.epoch == epochs:
            fid[str(trainer.epoch)] = round(offline_fid(trainer.sample(scored)).fid, 1)

    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(config, run_dir, progress=False, log=lambda message: None, resume=False).fit(on_epoch_end=measure)
    return {"seed": seed, "precision": precision, "classes": classes, "exit_epoch": exit_epoch(classes), "fid": fid}


def summarise(runs: list[dict], epochs: int) -> dict:
    """Per precision: how many runs exit within `epochs`, when (median [min-max]), which seeds don't, and FID at
    each scored epoch."""
    summary = {}
    for precision in dict.fromkeys(r["precision"] for r in runs):
        mine = [r for r in runs if r["precision"] == precision]
        exits = [r["exit_epoch"] for r in mine if r["exit_epoch"] is not None]
        summary[precision] = {"runs": len(mine), "exited": len(exits),
                              "exit_epoch": spread(exits) if exits else None,
                              "not_exited_seeds": [r["seed"] for r in mine if r["exit_epoch"] is None],
                              "fid": {epoch: spread([r["fid"][epoch] for r in mine]) for epoch in mine[0]["fid"]},
                              "epochs": epochs}
    return summary


def lottery(preset: str = "demo", seeds=SEEDS, precisions=PRECISIONS, epochs: int = EPOCHS, jobs: int = 1,
            fid_at: tuple[int, ...] = (), **overrides) -> dict:
    """Every (seed, precision) run, `jobs` at a time in processes of their own, and their summary."""
    work = functools.partial(run, preset, epochs, fid_at=tuple(fid_at), **overrides)
    pairs = [(seed, precision) for precision in precisions for seed in seeds]
    runs = map_over_processes(work, pairs, jobs)
    return {"preset": preset, "overrides": overrides, "epochs": epochs, "runs": runs,
            "summary": summarise(runs, epochs)}


def markdown(report: dict) -> str:
    """Per precision: runs that drew all ten classes within the epochs, when, which seeds did not, and FID."""
    result = report["result"]
    recipe = ", ".join(f"{key}={value}" for key, value in result["overrides"].items()) or "as shipped"
    scored = list(next(iter(result["summary"].values()))["fid"])
    lines = [f"The {result['preset']} preset ({recipe}), {result['epochs']} epochs; classes among {SAMPLES} EMA "
             f"samples after every epoch, offline FID, median [min–max]. Machine: {report['machine']['cpu']}.", "",
             "| precision | runs with all ten classes | first epoch with all ten | seeds without | "
             + " | ".join(f"FID at epoch {epoch}" for epoch in scored) + " |", "|---" * (4 + len(scored)) + "|"]
    for precision, s in result["summary"].items():
        first = cell(s["exit_epoch"]) if s["exit_epoch"] else "—"
        lines.append(f"| {precision} | {s['exited']} of {s['runs']} | {first} | "
                     f"{', '.join(map(str, s['not_exited_seeds'])) or 'none'} | "
                     + " | ".join(cell(s["fid"][epoch]) for epoch in scored) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--precisions", nargs="*", default=list(PRECISIONS), choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--fid-at", type=int, nargs="*", default=[], help="epochs scored by FID besides the last")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, each in its own process")
    parser.add_argument("--augment", help="a DiffAugment policy for the candidate, such as translation,cutout")
    parser.add_argument("--name", help="the results file's label (default the preset's name)")
    args = parser.parse_args(argv)
    overrides = {"augment": args.augment} if args.augment else {}
    machine = machine_info(torch.device("cpu"))
    report = {"machine": machine, "result": lottery(args.preset, args.seeds, args.precisions, args.epochs, args.jobs,
                                                    args.fid_at, **overrides)}
    print(markdown(report))
    out = RESULTS_DIR / f"lottery-{args.name or args.preset}-{machine['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
