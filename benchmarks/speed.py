"""Training speed of dcganlib's Trainer against the canonical PyTorch DCGAN loop, on the same networks and data.

`python benchmarks/speed.py` prints Markdown tables and writes benchmarks/results/speed-<machine>.json;
`--quick` is a short run, `--presets` picks the presets. The two loops run in alternating timed windows in one
process, so a load change on a shared machine slows both and their ratio holds.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dcganlib.config import Config
from dcganlib.data import load_mnist_5k
from dcganlib.devices import autocast_dtype, pick_device
from dcganlib.models import build_models, generate, make_noise
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.reference import ReferenceLoop  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRESETS = ("mnist28", "dcgan32", "dcgan64")
QUICK_PRESETS = ("mnist28", "dcgan64")  # the presets that have targets
ABLATION_PRESETS = ("mnist28", "dcgan64")
# Minimum lib/ref throughput ratio per device type and preset.
SPEEDUP_TARGETS = {"cpu": {"mnist28": 2.0, "dcgan64": 2.0}, "cuda": {"dcgan64": 3.0}}
SLIDER_TARGET_MS = 20.0
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure: steps per window are sized from the warm-up so each window lasts ~window_s."""

    batch_size: int = 128
    warmup: int = 2
    repeats: int = 5
    window_s: float = 3.0
    ablation_repeats: int = 3
    ablation_window_s: float = 1.5
    matmul_size: int = 2048
    matmul_repeats: int = 10
    latency_runs: int = 50


DEFAULT = Settings()
QUICK = Settings(warmup=1, repeats=2, window_s=1.0, ablation_repeats=1, ablation_window_s=0.5, matmul_size=1024,
                 matmul_repeats=5, latency_runs=20)


# --- machine -----------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    """CPU model, cores, threads, torch version, GPU name and the load average, for the report."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    info = {
        "cpu": (names[0].strip() if names else platform.processor()) or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # OpenMP's spin-waiting decides how much other processes' load slows a multi-threaded step.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average": os.getloadavg(),
    }
    name = info["gpu"] or f"{info['cpu']} {info['cores']}c"
    info["slug"] = f"{device.type}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a timer read afterwards covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- memory ------------------------------------------------------------------------------------------------
_CLEAR_REFS = Path("/proc/self/clear_refs")


def memory_label(device: torch.device) -> str:
    return "peak CUDA memory allocated" if device.type == "cuda" else "peak RSS growth (getrusage, CPU)"


def reset_peak_memory(device: torch.device) -> float:
    """Start a new peak; returns the baseline in bytes (current RSS on CPU, 0 on CUDA, whose peak is absolute)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0.0
    # Hand freed heap back first, then reset the kernel's RSS high-water mark (Linux >= 4.0), so the next
    # getrusage reading is this window's own peak, not an earlier one's.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")
    return _max_rss()


def peak_memory(device: torch.device, baseline: float) -> float:
    """Peak bytes since `reset_peak_memory` returned `baseline`."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return max(0.0, _max_rss() - baseline)


def _max_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


# --- the two training paths -----------------------------------------------------------------------------
class ReferencePath:
    """The canonical loop, fed from its own DataLoader (per-image PIL transforms) as a real run is."""

    name = "reference"

    def __init__(self, config: Config, images: torch.Tensor, device: torch.device):
        self.device = device
        self.loop = ReferenceLoop(config, images, device=device)
        self._batches = self._forever()

    def _forever(self) -> Iterator[torch.Tensor]:
        while True:
            for real, _ in self.loop.loader:
                yield real

    def run(self, steps: int) -> None:
        """`steps` updates, data loading included; the loop's .item() reads already wait for the device."""
        for _ in range(steps):
            self.loop.step(next(self._batches))


class LibraryPath:
    """dcganlib's Trainer on its real path: `loader.epoch(e)` batches into `train_step`."""

    name = "dcganlib"

    def __init__(self, config: Config, device: torch.device, run_dir: Path):
        self.device = device
        self.trainer = Trainer(config, run_dir, device=device, resume=False, progress=False, log=lambda _: None)
        self._batches = self._forever()

    def _forever(self) -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            yield from self.trainer.loader.epoch(epoch)
            epoch += 1

    def next_batch(self) -> torch.Tensor:
        return next(self._batches)

    def run(self, steps: int) -> None:
        """`steps` updates; the stats stay on the device and are read once at the end, as fit() batches them."""
        stats = [self.trainer.train_step(self.next_batch()) for _ in range(steps)]
        torch.stack(stats).cpu()


def timed(path, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds for `steps` updates of `path`, device work included."""
    synchronize(path.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    path.run(steps)
    synchronize(path.device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def alternate(paths: dict, settings: Settings, repeats: int, window_s: float) -> dict:
    """Warm each path up, size its window to ~window_s, then time windows round-robin; images/s per window."""
    steps, memory = {}, dict.fromkeys(paths, 0.0)
    for name, path in paths.items():
        seconds = 0.0
        for _ in range(settings.warmup):
            baseline = reset_peak_memory(path.device)
            seconds, _ = timed(path, 1)
            memory[name] = max(memory[name], peak_memory(path.device, baseline))
        steps[name] = max(1, round(window_s / seconds))
    rates, cpu_rates = {name: [] for name in paths}, {name: [] for name in paths}
    for _ in range(repeats):
        for name, path in paths.items():
            baseline = reset_peak_memory(path.device)
            seconds, cpu_seconds = timed(path, steps[name])
            memory[name] = max(memory[name], peak_memory(path.device, baseline))
            rates[name].append(steps[name] * settings.batch_size / seconds)
            cpu_rates[name].append(steps[name] * settings.batch_size / cpu_seconds)
    # Images per CPU-second hardly moves with other processes' load at 1 thread (at 2+, idle threads spin).
    return {name: {"images_per_s": rates[name], "median_images_per_s": statistics.median(rates[name]),
                   "images_per_cpu_s": cpu_rates[name], "median_images_per_cpu_s": statistics.median(cpu_rates[name]),
                   "steps_per_window": steps[name], "peak_memory_bytes": memory[name]} for name in paths}


def step_flops(path: LibraryPath) -> int:
    """FLOPs of one full D+G update of the library path (forward and backward of every network call)."""
    real = path.next_batch()
    with FlopCounterMode(display=False) as counter:
        path.trainer.train_step(real)
    return int(counter.get_total_flops())


def preset_config(preset: str, batch_size: int, **overrides) -> Config:
    return Config.from_preset(preset, dataset="mnist-5k", batch_size=batch_size, **overrides)


def throughput(preset: str, images: torch.Tensor, device: torch.device, settings: Settings) -> dict:
    """Reference vs dcganlib on `preset`: median images/s of alternating windows, their ratio, FLOPs, memory."""
    config = preset_config(preset, settings.batch_size)
    with tempfile.TemporaryDirectory() as run_dir:
        library = LibraryPath(config, device, Path(run_dir))
        reference = ReferencePath(config, images, device)
        result = alternate({"reference": reference, "dcganlib": library}, settings, settings.repeats,
                           settings.window_s)
        flops = step_flops(library)
    ref, lib = result["reference"], result["dcganlib"]
    # Each window pair ran back to back under the same load: the median of their ratios is the robust speedup.
    return {"preset": preset, "batch_size": settings.batch_size, "flops_per_step": flops,
            "precision": config.precision, "channels_last": config.channels_last, **result,
            "ratio": _paired_ratio(ref["images_per_s"], lib["images_per_s"]),
            "ratio_cpu_time": _paired_ratio(ref["images_per_cpu_s"], lib["images_per_cpu_s"]),
            "ratio_of_medians": lib["median_images_per_s"] / ref["median_images_per_s"]}


def _paired_ratio(reference: list[float], library: list[float]) -> float:
    return statistics.median(b / a for a, b in zip(reference, library, strict=True))


def ablation(preset: str, device: torch.device, settings: Settings) -> dict:
    """The library path with precision fp32/mixed x channels_last off/on, windows alternating between them."""
    mixed = autocast_dtype("auto", device)
    mixed_name = DTYPE_NAMES[mixed or torch.bfloat16]
    variants = {f"{precision} {'NHWC' if channels_last else 'NCHW'}": (precision, channels_last)
                for precision in ("fp32", mixed_name) for channels_last in (False, True)}
    with tempfile.TemporaryDirectory() as run_dir:
        paths = {name: LibraryPath(preset_config(preset, settings.batch_size, precision=precision,
                                                 channels_last=channels_last), device, Path(run_dir) / str(i))
                 for i, (name, (precision, channels_last)) in enumerate(variants.items())}
        result = alternate(paths, settings, settings.ablation_repeats, settings.ablation_window_s)
    return {"preset": preset, "variants": {name: r["median_images_per_s"] for name, r in result.items()},
            "runs": result}


# --- device peak and slider latency -----------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> dict:
    """FLOP/s of a size x size matmul in `dtype` (median and best of `repeats` after one warm-up)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3
    return {"dtype": DTYPE_NAMES[dtype], "size": size,
            "median_flops_per_s": flops / statistics.median(times), "best_flops_per_s": flops / min(times)}


def slider_latency(runs: int) -> dict:
    """Milliseconds for one 64 px image from dcgan64's G (batch 1, eval, no_grad, CPU), as the slider draws it."""
    config = Config.from_preset("dcgan64")
    generator, _ = build_models(config)
    z = make_noise(1, config.z_dim, seed=0)
    for _ in range(3):
        generate(generator, z)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        generate(generator, z)
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "best_ms": 1000 * min(times), "runs": runs}


# --- the whole run ----------------------------------------------------------------------------------------
def run_benchmark(presets=PRESETS, settings: Settings = DEFAULT, device=None, ablation_presets=ABLATION_PRESETS,
                  log=print) -> dict:
    """Every measurement, as one JSON-able dict."""
    device = pick_device(device)
    machine = machine_info(device)
    images = load_mnist_5k()[0]
    mixed = autocast_dtype("auto", device) or torch.bfloat16
    log(f"Peak matmul on {device.type} ...")
    peaks = {"fp32": matmul_peak(device, torch.float32, settings.matmul_size, settings.matmul_repeats),
             "mixed": matmul_peak(device, mixed, settings.matmul_size, settings.matmul_repeats)}
    results = []
    for preset in presets:
        log(f"Throughput {preset} ...")
        results.append(throughput(preset, images, device, settings))
    ablations = []
    for preset in ablation_presets:
        log(f"Ablation {preset} ...")
        ablations.append(ablation(preset, device, settings))
    log("Slider latency ...")
    latency = slider_latency(settings.latency_runs)
    machine["load_average_end"] = os.getloadavg()
    report = {"machine": machine, "settings": dataclasses.asdict(settings), "matmul_peak": peaks,
              "throughput": results, "ablation": ablations, "slider_latency": latency,
              "memory_kind": memory_label(device)}
    for row in results:
        achieved = row["flops_per_step"] / row["batch_size"]
        for name in ("reference", "dcganlib"):
            row[name]["fraction_of_peak"] = {
                key: achieved * row[name]["median_images_per_s"] / peak["median_flops_per_s"]
                for key, peak in peaks.items()}
    report["targets"] = check_targets(report)
    return report


def check_targets(report: dict) -> list[dict]:
    """PASS/FAIL for each target that this device can measure."""
    device = report["machine"]["device"]
    rows = []
    ratios = {row["preset"]: row["ratio"] for row in report["throughput"]}
    for preset, minimum in SPEEDUP_TARGETS.get(device, {}).items():
        if preset in ratios:
            rows.append({"target": f"{device} {preset}: dcganlib >= {minimum:g}x reference",
                         "measured": f"{ratios[preset]:.2f}x", "pass": ratios[preset] >= minimum})
    latency = report["slider_latency"]["median_ms"]
    rows.append({"target": f"slider: dcgan64 G, 1 image, CPU < {SLIDER_TARGET_MS:g} ms",
                 "measured": f"{latency:.1f} ms", "pass": latency < SLIDER_TARGET_MS})
    return rows


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    m, s, peaks = report["machine"], report["settings"], report["matmul_peak"]
    mixed = peaks["mixed"]["dtype"]
    load = " / ".join(f"{x:.2f}" for x in m["load_average"])
    load_end = " / ".join(f"{x:.2f}" for x in m["load_average_end"])
    lines = [
        f"**Machine:** {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads, "
        f"OMP_WAIT_POLICY {m['omp_wait_policy']})"
        + (f", GPU {m['gpu']}" if m["gpu"] else "") + f"; torch {m['torch']}, Python {m['python']}; "
        f"device {m['device']}.  ",
        f"**Load average** (1/5/15 min): {load} at start, {load_end} at end.  ",
        f"**Method:** batch {s['batch_size']}, mnist-5k; {s['warmup']} warm-up step(s), then {s['repeats']} "
        f"alternating windows of ~{s['window_s']:g} s per loop; images/s is the median window, lib/ref the "
        "median of the paired window ratios. Reference = canonical pytorch/examples loop (DataLoader + PIL "
        "transforms, fp32, NCHW, Sigmoid+BCELoss, .item() per step), data loading included.",
        "",
        f"| preset | GFLOP/step | reference img/s | dcganlib img/s | lib/ref | ref % of fp32 / {mixed} peak "
        f"| lib % of fp32 / {mixed} peak | lib/ref per CPU-second | ref {report['memory_kind']} "
        f"| lib {report['memory_kind']} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["throughput"]:
        ref, lib = row["reference"], row["dcganlib"]
        lines.append(
            f"| {row['preset']} | {row['flops_per_step'] / 1e9:.1f} | {ref['median_images_per_s']:.0f} "
            f"| {lib['median_images_per_s']:.0f} | **{row['ratio']:.2f}x** | {_fractions(ref)} | {_fractions(lib)} "
            f"| {row['ratio_cpu_time']:.2f}x | {_mib(ref)} | {_mib(lib)} |")
    lines += ["", f"Matmul peak ({peaks['fp32']['size']}² on {m['device']}, median): "
              f"fp32 {peaks['fp32']['median_flops_per_s'] / 1e9:.0f} GFLOP/s, "
              f"{mixed} {peaks['mixed']['median_flops_per_s'] / 1e9:.0f} GFLOP/s."]
    lines += _ablation_table(report)
    latency = report["slider_latency"]
    lines += ["", f"Slider latency (dcgan64 G, 1 image, eval, no_grad, CPU): median {latency['median_ms']:.1f} ms "
              f"over {latency['runs']} runs (best {latency['best_ms']:.1f} ms).",
              "", "| target | measured | result |", "|---|---:|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'FAIL'} |" for t in report["targets"]]
    return "\n".join(lines)


def _ablation_table(report: dict) -> list[str]:
    """The ablation's Markdown lines (none without an ablation)."""
    if not report["ablation"]:
        return []
    names = list(report["ablation"][0]["variants"])
    base = names[0]
    lines = ["", f"Ablation, dcganlib path (img/s, and x vs {base}; {report['settings']['ablation_repeats']} "
             "alternating windows):", "", "| preset | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in report["ablation"]:
        values = row["variants"]
        lines.append(f"| {row['preset']} | " + " | ".join(
            f"{values[n]:.0f} ({values[n] / values[base]:.2f}x)" for n in names) + " |")
    return lines


def _mib(path: dict) -> str:
    return f"{path['peak_memory_bytes'] / 2**20:.0f} MiB"


def _fractions(path: dict) -> str:
    fractions = path["fraction_of_peak"]
    return f"{100 * fractions['fp32']:.0f}% / {100 * fractions['mixed']:.0f}%"


def save(report: dict, path: Path | None = None) -> Path:
    """Write the report as JSON, by default to results/speed-<machine>.json."""
    path = path or RESULTS_DIR / f"speed-{report['machine']['slug']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (~1 min on a 2-core CPU)")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, help="presets to time (default: all)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT.batch_size)
    parser.add_argument("--no-ablation", action="store_true", help="skip the precision/channels_last rows")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/speed-<machine>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = dataclasses.replace(QUICK if args.quick else DEFAULT, batch_size=args.batch_size)
    presets = args.presets or (QUICK_PRESETS if args.quick else PRESETS)
    ablation_presets = () if args.no_ablation else [p for p in ABLATION_PRESETS if p in presets]
    report = run_benchmark(presets, settings, args.device, ablation_presets)
    path = save(report, args.out)
    print()
    print(markdown(report))
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
