"""The 64 px colour training feed on a folder of CelebA-sized JPEGs: dcganlib's prepared data against pytorch/examples'
loader, the time to prepare the folder once, the time to load it again, and what a re-run in a new process waits
before its first training step.

    python benchmarks/data_feed.py                    # 20,000 faces, ~2 min on a 2-core CPU
    python benchmarks/data_feed.py --images 2000 --repeats 1
    python benchmarks/data_feed.py --examples-main ../examples/dcgan/main.py    # also dcgan64 end to end

The folder holds tools/photos.py's cartoon faces: 178 x 218 JPEGs of about 7 KB, CelebA's size and weight. Both
feeds deliver shuffled float batches of 128 in [-1, 1] on the device (a GPU when there is one): pytorch/examples'
`dcgan/main.py` loader is `ImageFolder` with Resize, CenterCrop, ToTensor and Normalize in a `DataLoader` with its
default 2 workers; dcganlib's is `BatchLoader` over the prepared array. Epochs of the two alternate, so a load
change on a shared machine slows both. Prints a Markdown table and writes results/data-feed-<machine>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import center_crop, resize

from dcganlib.data import BatchLoader, load_dataset
from dcganlib.devices import pick_device
from dcganlib.prepared import decode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root, when run as a script
from benchmarks.speed import machine_info, synchronize  # noqa: E402
from tools.photos import write_faces  # noqa: E402

RESULTS_DIR = HERE / "results"
IMAGE_SIZE, BATCH_SIZE, EXAMPLES_WORKERS = 64, 128, 2
FEED_EPOCHS = 5  # epochs of the prepared feed timed together against one of pytorch/examples' loader
# Minimum ratios: the prepared feed against pytorch/examples' in images/s, preparing against loading again, and on
# a GPU the whole of training against pytorch/examples' dcgan/main.py.
FEED_TARGET, LOAD_TARGET, END_TO_END_TARGET = 20.0, 10.0, 3.0
# A new process: import dcganlib, build a Trainer on the prepared folder (which loads the array), take one step.
RERUN = """
import sys, time
started = time.perf_counter()
from dcganlib import Config, Trainer
imported = time.perf_counter()
config = Config.from_preset("celeba64", dataset="folder:" + sys.argv[1], data_root=sys.argv[2], batch_size=128)
trainer = Trainer(config, sys.argv[3], device=sys.argv[4], progress=False, log=lambda message: None)
built = time.perf_counter()
trainer.train_batch(next(iter(trainer.loader.epoch(0))))
print(imported - started, built - imported, time.perf_counter() - built)
"""


def examples_loader(folder: Path) -> DataLoader:
    """pytorch/examples dcgan/main.py's data pipeline for an image folder, at 64 px."""
    dataset = datasets.ImageFolder(root=str(folder), transform=transforms.Compose([
        transforms.Resize(IMAGE_SIZE), transforms.CenterCrop(IMAGE_SIZE), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=EXAMPLES_WORKERS)


def epoch_rate(batches, device: torch.device) -> float:
    """Images per second through `batches` (an epoch or more), each moved to the device as training would."""
    started, count = time.perf_counter(), 0
    for batch in batches:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        images = images.to(device, non_blocking=True)
        count += len(images)
    synchronize(device)
    return count / (time.perf_counter() - started)


def decoder_rates(folder: Path, count: int) -> dict[str, float]:
    """Images per second on one core from JPEG bytes to a 64 px uint8 array, for each decoder considered."""
    blobs = [path.read_bytes() for path in sorted(folder.rglob("*.jpg"))[:count]]

    def pil_full(blob: bytes):
        with Image.open(io.BytesIO(blob)) as image:
            return np.asarray(ImageOps.fit(image.convert("RGB"), (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))

    def torchvision_decode(blob: bytes):
        image = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB,
                             apply_exif_orientation=True)
        return center_crop(resize(image, [IMAGE_SIZE], antialias=True), [IMAGE_SIZE, IMAGE_SIZE])

    decoders = {"PIL, full decode": pil_full,
                "PIL with JPEG draft (dcganlib)": partial(decode, image_size=IMAGE_SIZE, channels=3),
                "torchvision.io.decode_image": torchvision_decode}
    rates = {}
    # torchvision 0.29 deprecates its image decoders (for TorchCodec) and warns on every call.
    with torch_threads(1), warnings.catch_warnings(action="ignore", category=DeprecationWarning):
        for name, decoder in decoders.items():
            started = time.perf_counter()
            for blob in blobs:
                decoder(blob)
            rates[name] = len(blobs) / (time.perf_counter() - started)
    return rates


@contextlib.contextmanager
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the preparation's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def prepare_and_load(folder: Path, root: Path) -> dict:
    """Prepare the folder once (wall and CPU seconds), then load the prepared array again."""
    started, cpu = time.perf_counter(), cpu_seconds()
    load_dataset(f"folder:{folder}", root=root, image_size=IMAGE_SIZE, channels=3)
    prepare_s, prepare_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    started = time.perf_counter()
    dataset = load_dataset(f"folder:{folder}", root=root, image_size=IMAGE_SIZE, channels=3)
    load_s = time.perf_counter() - started
    return {"dataset": dataset, "prepare_s": prepare_s, "prepare_cores": prepare_cpu / prepare_s, "load_s": load_s}


def rerun(folder: Path, root: Path, run_dir: Path, device: torch.device) -> dict:
    """A new process's wait before its first step on the prepared folder, in phases."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RERUN, str(folder), str(root), str(run_dir), str(device)],
                          capture_output=True, text=True, check=True)
    imports, build, step = map(float, done.stdout.splitlines()[-1].split())
    return {"total_s": time.perf_counter() - started, "import_s": imports, "trainer_s": build, "first_step_s": step}


def run_benchmark(images: int, repeats: int, device: torch.device, workdir: Path,
                  log=print) -> dict:
    """Every measurement on `images` faces in `workdir`; returns the report."""
    folder = workdir / "faces"
    log(f"writing {images:,} faces to {folder} ...")
    write_faces(folder / "all", images)  # ImageFolder needs one class folder
    decoders = decoder_rates(folder, min(images, 2000))
    log("one core: " + ", ".join(f"{name} {rate:,.0f}" for name, rate in decoders.items()) + " images/s")
    prepared = prepare_and_load(folder, workdir / "data")
    log(f"prepared in {prepared['prepare_s']:.1f} s on {prepared['prepare_cores']:.2f} cores, loaded in "
        f"{prepared['load_s']:.2f} s")
    loader = BatchLoader(prepared.pop("dataset"), BATCH_SIZE, device=device)
    examples = examples_loader(folder)
    rates = {"examples": [], "dcganlib": []}
    for epoch in range(repeats):
        rates["examples"].append(epoch_rate(examples, device))
        # An epoch of the prepared feed lasts a fraction of a second: time several, for a steadier number. The
        # batches are recycled, as the Trainer draws them.
        epochs = range(epoch * FEED_EPOCHS, (epoch + 1) * FEED_EPOCHS)
        batches = itertools.chain.from_iterable(loader.epoch(number, recycle=True) for number in epochs)
        rates["dcganlib"].append(epoch_rate(batches, device))
        log(f"epoch {epoch}: examples {rates['examples'][-1]:,.0f}, dcganlib {rates['dcganlib'][-1]:,.0f} images/s")
    feed = {name: statistics.median(values) for name, values in rates.items()}
    return {"images": images, "device": device.type, "decoders_images_per_s": decoders, "feed_images_per_s": feed,
            "feed_runs": rates, "feed_ratio": feed["dcganlib"] / feed["examples"], **prepared,
            "load_ratio": prepared["prepare_s"] / prepared["load_s"],
            "rerun": rerun(folder, workdir / "data", workdir / "run", device)}


def end_to_end(folder: Path, workdir: Path, examples_main: Path, epochs: int, device: torch.device) -> dict:
    """dcgan64 trained `epochs` epochs on the folder, each program timed from start to exit: pytorch/examples'
    unmodified `dcgan/main.py` against dcganlib's CLI, whose time includes preparing the folder (a new data root)."""
    accelerator = [] if device.type == "cpu" else ["--accel"]
    examples = [sys.executable, str(examples_main), "--dataset", "folder", "--dataroot", str(folder), "--imageSize",
                str(IMAGE_SIZE), "--batchSize", str(BATCH_SIZE), "--niter", str(epochs), "--manualSeed", "0",
                "--outf", str(workdir / "examples-out"), *accelerator]
    dcganlib = [sys.executable, "-m", "dcganlib", "train", "--preset", "celeba64", "--dataset", f"folder:{folder}",
                "--data-root", str(workdir / "end-to-end-data"), "--batch-size", str(BATCH_SIZE), "--epochs",
                str(epochs), "--run-dir", str(workdir / "end-to-end-run"), "--device", str(device)]
    seconds = {}
    for name, command in (("examples", examples), ("dcganlib", dcganlib)):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds[name] = time.perf_counter() - started
    return {"epochs": epochs, "seconds": seconds, "ratio": seconds["examples"] / seconds["dcganlib"]}


def markdown(report: dict) -> str:
    """The report as the table in docs/results.md."""
    result, machine = report["result"], report["machine"]
    feed, rerun_phases = result["feed_images_per_s"], result["rerun"]
    verdict = {True: "PASS", False: "FAIL"}
    rows = [
        f"*{result['images']:,} JPEGs of 178 x 218 px at {IMAGE_SIZE} px, batches of {BATCH_SIZE} on "
        f"{result['device']}; {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}.*",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| pytorch/examples loader (ImageFolder, {EXAMPLES_WORKERS} workers) | {feed['examples']:,.0f} images/s | |",
        f"| dcganlib, batches from the prepared array | {feed['dcganlib']:,.0f} images/s | |",
        f"| feed ratio | {result['feed_ratio']:.0f}x | >= {FEED_TARGET:.0f}x: "
        f"{verdict[result['feed_ratio'] >= FEED_TARGET]} |",
        *(f"| decoding on one core: {name} | {rate:,.0f} images/s | |"
          for name, rate in result["decoders_images_per_s"].items()),
        f"| preparing once | {result['prepare_s']:.1f} s on {result['prepare_cores']:.2f} cores | both cores |",
        f"| loading the prepared array again | {result['load_s']:.2f} s ({result['load_ratio']:.0f}x faster) | "
        f">= {LOAD_TARGET:.0f}x: {verdict[result['load_ratio'] >= LOAD_TARGET]} |",
        f"| a re-run in a new process, until its first step is done | {rerun_phases['total_s']:.1f} s (imports "
        f"{rerun_phases['import_s']:.1f}, Trainer with the data {rerun_phases['trainer_s']:.1f}, step "
        f"{rerun_phases['first_step_s']:.1f}) | |",
    ]
    if whole := result.get("end_to_end"):
        rows.append(f"| dcgan64, {whole['epochs']} epoch(s) end to end: pytorch/examples' main.py against dcganlib's "
                    f"CLI (preparing included) | {whole['seconds']['examples']:.0f} s against "
                    f"{whole['seconds']['dcganlib']:.0f} s: {whole['ratio']:.1f}x | >= {END_TO_END_TARGET:.0f}x on a "
                    f"GPU{': ' + verdict[whole['ratio'] >= END_TO_END_TARGET] if result['device'] == 'cuda' else ''} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="epochs of each feed")
    parser.add_argument("--device", default=None, help="where batches go (default: a GPU when there is one)")
    parser.add_argument("--examples-main", type=Path, help="pytorch/examples' dcgan/main.py, unmodified: also time "
                        "dcgan64 end to end against it (a copy beside the checkout; it is not part of dcganlib)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the end-to-end comparison")
    parser.add_argument("--out", type=Path, help="JSON path (default results/data-feed-<machine>.json)")
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as workdir:
        result = run_benchmark(args.images, args.repeats, device, Path(workdir))
        if args.examples_main:
            result["end_to_end"] = end_to_end(Path(workdir) / "faces", Path(workdir), args.examples_main.resolve(),
                                              args.epochs, device)
    report = {"machine": machine_info(device), "date": time.strftime("%Y-%m-%d"), "result": result}
    print(markdown(report))
    out = args.out or RESULTS_DIR / f"data-feed-{report['machine']['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    sys.exit(0 if result["feed_ratio"] >= FEED_TARGET and result["load_ratio"] >= LOAD_TARGET else 1)


if __name__ == "__main__":
    main()
