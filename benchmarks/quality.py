"""Sample quality of dcganlib's Trainer against the canonical PyTorch DCGAN loop, on mnist-5k, on this machine.

`python benchmarks/quality.py` trains each preset twice from the same seed, once with the reference loop and once
with dcganlib (bf16, channels_last, EMA: its defaults), for the same number of epochs; then gives dcganlib the
reference's wall time. It reports offline FID (the shipped MNIST classifier's features) against the 1,000
held-out digits, mode coverage, and the real-vs-real floor, as a Markdown table and results/quality-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

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

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# dcgan32 (760 GFLOP a step) takes ~2 min an epoch here with dcganlib and ~4 with the reference: too slow for
# a CPU comparison at informative epoch counts; run it with --presets dcgan32 --epochs N on a GPU.
EPOCHS = {"mnist28": 40, "mnist32": 12}
SAMPLES = 1000
TARGET_EQUAL_EPOCHS, TARGET_EQUAL_TIME = 0.8, 0.6


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


def compare(preset: str, epochs: int, seed: int = 0, **overrides) -> dict:
    """Reference for `epochs`, dcganlib for `epochs`, then dcganlib on for the reference's wall time."""
    config = Config.from_preset(preset, dataset="mnist-5k", seed=seed, epochs=epochs, **overrides)
    noise = make_noise(SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(seed + 1234))
    reference = ReferenceLoop(config, load_mnist_5k()[0], seed=seed)
    started = time.perf_counter()
    for _ in range(epochs):
        reference.train_epoch()
    reference_seconds = time.perf_counter() - started
    result = {"preset": preset, "epochs": epochs,
              "reference": {**score(reference.sample(noise)), "seconds": round(reference_seconds, 1)}}

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
        started = time.perf_counter()
        trainer.fit()
        library_seconds = time.perf_counter() - started
        result["library"] = {**score(trainer.sample(noise)), "seconds": round(library_seconds, 1)}
        while time.perf_counter() - started + library_seconds / epochs <= reference_seconds:
            trainer.fit(epochs=trainer.epoch + 1)
        result["library_equal_time"] = {**score(trainer.sample(noise)), "epochs": trainer.epoch,
                                        "seconds": round(time.perf_counter() - started, 1)}
    result["ratio_equal_epochs"] = round(result["library"]["fid"] / result["reference"]["fid"], 3)
    result["ratio_equal_time"] = round(result["library_equal_time"]["fid"] / result["reference"]["fid"], 3)
    return result


def precision_check(preset: str, epochs: int, seeds=(0, 1), **overrides) -> dict:
    """FID of dcganlib's fast path (bf16, channels_last) and of fp32 NCHW at equal epochs, over a few seeds."""
    result = {"preset": preset, "epochs": epochs}
    for name, settings in (("fast", {}), ("fp32", {"precision": "fp32", "channels_last": False})):
        fids = []
        for seed in seeds:
            config = Config.from_preset(preset, dataset="mnist-5k", seed=seed, epochs=epochs, **settings, **overrides)
            with tempfile.TemporaryDirectory() as run_dir:
                trainer = Trainer(config, run_dir, progress=False, log=lambda message: None)
                trainer.fit()
                noise = make_noise(SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(seed + 1234))
                fids.append(score(trainer.sample(noise))["fid"])
        result[name] = fids
    return result


def markdown(report: dict) -> str:
    """The README table."""
    machine = report["machine"]
    lines = [f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}. FID: offline, "
             f"{SAMPLES} generated vs the 1,000 held-out mnist-5k digits, features of the shipped MNIST classifier; "
             "lower is better.", "",
             "| preset | epochs | reference FID (classes, s) | dcganlib FID (classes, s) | ratio | "
             "dcganlib at reference's time: epochs, FID (classes) | ratio |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        ref, lib, eq = row["reference"], row["library"], row["library_equal_time"]
        lines.append(f"| {row['preset']} | {row['epochs']} | {ref['fid']} ({ref['classes']}, {ref['seconds']} s) | "
                     f"{lib['fid']} ({lib['classes']}, {lib['seconds']} s) | {row['ratio_equal_epochs']} | "
                     f"{eq['epochs']}, {eq['fid']} ({eq['classes']}) | {row['ratio_equal_time']} |")
    f4000, f1000 = report["floor"]["train_4000"], report["floor"]["train_1000"]
    lines += ["", f"Real-vs-real floor: train split vs held-out FID {f4000['fid']} (4,000 vs 1,000), "
              f"{f1000['fid']} (1,000 vs 1,000). Targets: ratio ≤ {TARGET_EQUAL_EPOCHS} at equal epochs, "
              f"≤ {TARGET_EQUAL_TIME} at equal wall time."]
    for check in report.get("precision", []):
        lines += ["", f"Fast path vs fp32 eager, {check['preset']}, {check['epochs']} epochs, FID per seed: "
                  f"bf16 + channels_last {check['fast']}, fp32 NCHW {check['fp32']}."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="*", default=list(EPOCHS), choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="override the per-preset epoch counts")
    parser.add_argument("--precision-check", action="store_true", help="also compare bf16 with fp32 (mnist32)")
    parser.add_argument("--out", type=Path, help="JSON path (default results/quality-<machine>.json)")
    args = parser.parse_args(argv)
    machine = machine_info(torch.device("cpu"))
    report = {"machine": machine, "floor": floor(), "rows": []}
    for preset in args.presets:
        report["rows"].append(compare(preset, args.epochs or EPOCHS.get(preset, 4)))
        print(json.dumps(report["rows"][-1]), flush=True)
    if args.precision_check:
        report["precision"] = [precision_check("mnist32", 8)]
        print(json.dumps(report["precision"][-1]), flush=True)
    text = markdown(report)
    print(text)
    out = args.out or RESULTS_DIR / f"quality-{machine['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
