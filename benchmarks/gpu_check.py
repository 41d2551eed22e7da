"""One command for a machine with a GPU: mixed precision, exact kill-and-resume, CUDA graphs and training speed.

`python benchmarks/gpu_check.py` (`make gpu-check`) checks, on mnist-5k (no download; dcgan64 upsamples the
digits to 64 px):

- precision: mnist28 and dcgan64 train a few hundred steps with precision="auto"; the Trainer must pick fp16 with
  an enabled GradScaler below compute capability 8.0 (T4) and bf16 from 8.0 on (on a CPU, bf16 where it has
  AVX-512 BF16 or AMX, else fp32), and every loss must be finite;
- resume: with deterministic algorithms, a child process trains 3 short epochs, is SIGKILLed halfway through
  epoch 2 (after the epoch-1 checkpoint) and is run again to the end; its final checkpoint must equal an
  uninterrupted run's bit for bit (G, D, EMA, optimisers, scaler, RNG states, history);
- compile (CUDA only): mnist28 steps/s eager against compile_mode="reduce-overhead" (CUDA graphs), and whether
  torch skipped the graph capture;
- speed: `benchmarks/speed.py --quick`, whose tables are included.

It prints a summary, writes benchmarks/results/gpu-check-<machine>.json and exits 1 if a check failed.
`--device cpu --quick` is the few-step CPU run the tests use (smaller nets, no speed.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.devices import pick_device
from dcganlib.history import STAT_NAMES
from dcganlib.runs import RunDir, checkpoint_name
from dcganlib.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script
from benchmarks.speed import machine_info  # noqa: E402
from tools.child_run import Child, count_tensors, differences  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
PRESETS = ("mnist28", "dcgan64")
CHECKS = ("precision", "resume", "compile", "speed")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}
# Written out rather than imported from dcganlib.devices: the check must not share the code it checks.
BF16_FROM_CAPABILITY = (8, 0)
CHILD_TIMEOUT_S = 300  # hard deadline for each child process
# Environment of the resume check's children: cuBLAS needs a fixed workspace to be deterministic.
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# Left out of the comparison: per-epoch wall time, and Python's and NumPy's global RNG states. The Trainer seeds
# only torch, so those two start from OS entropy in each process; nothing in training draws from them (if
# something did, the weights would differ and fail the check).
NOT_COMPARED = ("history.epoch.seconds", "rng.python", "rng.numpy")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much each check does."""

    steps: int = 300  # precision check: steps per preset
    batch_size: int = 128
    resume_batch_size: int = 128  # 39 steps per mnist-5k epoch: 3 short epochs
    compile_warmup: int = 30  # steps before timing: compiling and graph capture happen here
    compile_steps: int = 300
    resume_presets: tuple = PRESETS
    speed: bool = True  # run speed.py --quick
    overrides: tuple = ()  # Config overrides for every check (smaller nets in quick mode)


FULL = Plan()
# Enough to exercise every path on a 2-core CPU in about a minute.
QUICK = Plan(steps=3, batch_size=16, resume_batch_size=500, compile_warmup=5, compile_steps=20,
             resume_presets=PRESETS[:1], speed=False,
             overrides=(("g_features", 8), ("d_features", 8), ("sample_count", 16)))


def expected_dtype(device: torch.device) -> torch.dtype | None:
    """What precision="auto" should give on `device`, from the hardware alone."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= BF16_FROM_CAPABILITY else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_computes_bf16() else None


def cpu_computes_bf16() -> bool:
    """Whether the CPU has bf16 in hardware (AVX-512 BF16 or AMX); elsewhere torch emulates it, slowly."""
    flags = Path("/proc/cpuinfo")
    if flags.exists():
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags.read_text()))
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def preset_config(preset: str, plan: Plan, **overrides) -> Config:
    return Config.from_preset(preset, dataset="mnist-5k", **dict(plan.overrides), **overrides)


def batches(trainer: Trainer) -> Iterator[torch.Tensor]:
    """The trainer's batches, epoch after epoch."""
    epoch = 0
    while True:
        yield from trainer.loader.epoch(epoch)
        epoch += 1


def run_steps(trainer: Trainer, data: Iterator[torch.Tensor], steps: int) -> tuple[torch.Tensor, float]:
    """(steps x 4 stats on the CPU, seconds) for `steps` train steps, device work included."""
    synchronize(trainer.device)
    started = time.perf_counter()
    stats = torch.stack([trainer.train_step(next(data)) for _ in range(steps)]).cpu()
    return stats, time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quiet_trainer(config: Config, run_dir: Path, device: torch.device) -> Trainer:
    return Trainer(config, run_dir, device=device, resume=False, progress=False, log=lambda _: None)


# --- precision ---------------------------------------------------------------------------------------------
def precision_check(preset: str, device: torch.device, plan: Plan, workdir: Path) -> dict:
    """Train `plan.steps` steps with precision="auto": the expected autocast dtype and scaler, finite losses."""
    config = preset_config(preset, plan, batch_size=plan.batch_size, precision="auto")
    trainer = quiet_trainer(config, workdir / f"precision-{preset}", device)
    stats, seconds = run_steps(trainer, batches(trainer), plan.steps)
    expected = expected_dtype(device)
    row = {"preset": preset, "steps": plan.steps, "batch_size": plan.batch_size,
           "expected_dtype": DTYPE_NAMES[expected], "dtype": DTYPE_NAMES[trainer.amp_dtype],
           "scaler_enabled": trainer.scaler.is_enabled(),
           "scale": trainer.scaler.get_scale() if trainer.scaler.is_enabled() else None,
           "losses_finite": bool(torch.isfinite(stats).all()),
           "last": dict(zip(STAT_NAMES, stats[-1].tolist(), strict=True)), "steps_per_s": plan.steps / seconds}
    failures = []
    if trainer.amp_dtype != expected:
        failures.append(f"autocast dtype {row['dtype']}, expected {row['expected_dtype']}")
    if row["scaler_enabled"] != (expected == torch.float16):
        failures.append(f"GradScaler enabled={row['scaler_enabled']}, expected it only with fp16")
    if not row["losses_finite"]:
        failures.append(f"{int((~torch.isfinite(stats)).sum())} non-finite stats in {plan.steps} steps")
    return {**row, "failures": failures}


# --- resume ------------------------------------------------------------------------------------------------
def resume_check(preset: str, device: torch.device, plan: Plan, workdir: Path, *, sabotage: bool = False) -> dict:
    """Kill a child halfway through epoch 2, resume it to epoch 3; it must equal a run never killed."""
    config = preset_config(preset, plan, batch_size=plan.resume_batch_size, precision="auto", epochs=3)
    config_path = config.save_yaml(workdir / f"resume-{preset}.yaml")
    env = {**os.environ, **DETERMINISTIC_ENV}

    def child(run_dir: Path, *extra: str) -> Child:
        return Child([sys.executable, str(HERE.parent / "tools" / "child_run.py"), str(config_path), str(run_dir),
                      "--device", str(device), "--deterministic", *extra], cwd=HERE.parent, env=env)

    straight_dir, killed_dir = workdir / f"resume-{preset}-straight", workdir / f"resume-{preset}-killed"
    straight = child(straight_dir)  # runs alongside the other two
    killed = child(killed_dir, "--pause-in-epoch", "2")
    try:
        killed.wait_for("PAUSED", CHILD_TIMEOUT_S)
        newest_at_kill = checkpoint.latest_checkpoint(killed_dir)
        killed.kill()
        resumed = child(killed_dir, *(["--break-resume"] if sabotage else []))
        resumed_code = resumed.finish(CHILD_TIMEOUT_S)
    finally:
        straight_code = straight.finish(CHILD_TIMEOUT_S)

    info = killed.info()
    batches_per_epoch = info.get("batches_per_epoch") or 0
    row = {"preset": preset, "epochs": 3, "batch_size": plan.resume_batch_size, "batches_per_epoch": batches_per_epoch,
           "dtype": info.get("dtype"),
           "killed_at_batch_of_epoch_2": batches_per_epoch // 2,
           "newest_checkpoint_at_kill": getattr(newest_at_kill, "name", None),
           "deterministic_algorithms": info.get("deterministic_algorithms"),
           "cudnn_benchmark_set_by_trainer": info.get("cudnn_benchmark_set_by_trainer"),
           "cudnn_benchmark_in_check": info.get("cudnn_benchmark"), "sabotage": resumed.info().get("sabotage"),
           "resumed_from": next((line for line in resumed.lines if line.startswith("Resumed from")), None)}
    failures = [f"{name} run exited with code {code}:\n{run.tail()}"
                for name, run, code in (("uninterrupted", straight, straight_code), ("resumed", resumed, resumed_code))
                if code != 0]
    failures += _resume_failures(row, straight_dir, killed_dir) if not failures else []
    return {**row, "exact": not failures, "failures": failures}


def _resume_failures(row: dict, straight_dir: Path, killed_dir: Path) -> list[str]:
    """What is wrong with a kill-and-resume `row` whose runs all finished; adds the comparison's counts to it."""
    failures = []
    if row["newest_checkpoint_at_kill"] != checkpoint_name(1):
        failures.append(f"newest checkpoint when killed was {row['newest_checkpoint_at_kill']}, expected "
                        f"{checkpoint_name(1)}")
    if not (row["resumed_from"] or "").startswith("Resumed from epoch 1 "):
        failures.append(f"the re-run did not resume from epoch 1: {row['resumed_from']!r}")
    if not failures:
        a = checkpoint.load_checkpoint(RunDir(straight_dir).checkpoint(3))
        b = checkpoint.load_checkpoint(RunDir(killed_dir).checkpoint(3))
        diff = differences(a, b, skip=NOT_COMPARED)
        row.update(tensors_compared=count_tensors(a), differences=diff[:20], differing=len(diff))
        if diff:
            failures.append(f"{len(diff)} entries of the final checkpoint differ from the uninterrupted run's: "
                            + ", ".join(diff[:5]))
    return failures


# --- compile -----------------------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def compile_check(device: torch.device, plan: Plan, workdir: Path) -> dict:
    """mnist28 steps/s after warm-up: eager against torch.compile(mode="reduce-overhead"), and graph skips."""
    from torch._dynamo.utils import counters  # private, but where torch counts skipped CUDA-graph captures

    config = preset_config("mnist28", plan, batch_size=plan.batch_size)
    row = {"preset": "mnist28", "batch_size": plan.batch_size, "compile_mode": "reduce-overhead",
           "warmup_steps": plan.compile_warmup, "steps": plan.compile_steps}
    eager = quiet_trainer(config, workdir / "compile-eager", device)
    data = batches(eager)
    run_steps(eager, data, plan.compile_warmup)
    _, seconds = run_steps(eager, data, plan.compile_steps)
    row["eager_steps_per_s"] = plan.compile_steps / seconds
    # Where torch logs "skipping cudagraphs due to ..." (torch._inductor.cudagraph_utils).
    records = _Records()
    skip_log = logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs")
    skip_log.addHandler(records)
    counters.clear()
    failures = []
    try:
        compiled = quiet_trainer(dataclasses.replace(config, compile=True, compile_mode="reduce-overhead"),
                                 workdir / "compile-graphs", device)
        data = batches(compiled)
        _, row["warmup_s"] = run_steps(compiled, data, plan.compile_warmup)
        stats, seconds = run_steps(compiled, data, plan.compile_steps)
        row.update(compiled=True, compiled_steps_per_s=plan.compile_steps / seconds,
                   losses_finite=bool(torch.isfinite(stats).all()))
        row["speedup"] = row["compiled_steps_per_s"] / row["eager_steps_per_s"]
        if not row["losses_finite"]:
            failures.append("non-finite losses under compile")
    except Exception as error:  # a crash is the finding: record it and go on with the other checks
        row.update(compiled=False, error=f"{type(error).__name__}: {error}"[:3000])
        failures.append(f"compile_mode='reduce-overhead' crashed: {row['error'][:500]}")
    finally:
        skip_log.removeHandler(records)
    row.update(cudagraph_skips=counters["inductor"]["cudagraph_skips"], skip_reasons=sorted(set(records.messages)),
               graph_breaks=sum(counters["graph_break"].values()))
    row["cuda_graphs_used"] = row["compiled"] and row["cudagraph_skips"] == 0
    return {**row, "failures": failures}


# --- speed -------------------------------------------------------------------------------------------------
def speed_check(device: torch.device, workdir: Path) -> dict:
    """benchmarks/speed.py --quick in a subprocess, as a user would run it; its tables and JSON report."""
    out = workdir / "speed.json"
    command = [sys.executable, str(HERE / "speed.py"), "--quick", "--device", str(device), "--out", str(out)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True, timeout=1800)
    row = {"command": " ".join(["python", "benchmarks/speed.py", *command[2:-2]]), "returncode": done.returncode,
           "seconds": time.monotonic() - started}
    if done.returncode != 0:
        return {**row, "failures": [f"speed.py exited with code {done.returncode}: {done.stderr[-1500:]}"]}
    # Its progress lines, a blank line, the tables, a blank line, "Wrote <path>".
    tables = done.stdout.split("\n\n", 1)[-1].rsplit("\nWrote ", 1)[0].strip()
    return {**row, "summary": tables, "report": json.loads(out.read_text()), "failures": []}


# --- the whole check ---------------------------------------------------------------------------------------
def guarded(name: str, preset: str | None, check, *args, **kwargs) -> dict:
    """Run one check; an exception becomes that check's failure, and the others still run."""
    print(f"{name} {preset or ''} ...", flush=True)
    started = time.monotonic()
    try:
        row = check(*args, **kwargs)
    except Exception as error:
        row = {"preset": preset, "failures": [f"crashed: {type(error).__name__}: {error}"],
               "traceback": traceback.format_exc()}
    return {**row, "seconds": time.monotonic() - started}


def run_check(device: torch.device, plan: Plan, checks, *, sabotage: bool = False) -> dict:
    """Every selected check, as one JSON-able dict; report["passed"] is False if any check failed."""
    machine = machine_info(device)
    if device.type == "cuda":
        machine["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    report = {"machine": machine, "plan": dataclasses.asdict(plan), "checks": list(checks), "precision": [],
              "resume": [], "compile": None, "speed": None, "skipped": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = Path(tmp)
        if "precision" in checks:
            report["precision"] = [guarded("precision", p, precision_check, p, device, plan, workdir)
                                   for p in PRESETS]
        if "resume" in checks:
            report["resume"] = [guarded("resume", p, resume_check, p, device, plan, workdir, sabotage=sabotage)
                                for p in plan.resume_presets]
        if "compile" in checks and device.type != "cuda":
            report["skipped"]["compile"] = "CUDA graphs need a CUDA device"
        elif "compile" in checks:
            report["compile"] = guarded("compile", "mnist28", compile_check, device, plan, workdir)
        if "speed" in checks and not plan.speed:
            report["skipped"]["speed"] = "--quick"
        elif "speed" in checks:
            report["speed"] = guarded("speed.py --quick", None, speed_check, device, workdir)
    report["seconds"] = time.monotonic() - started
    rows = [*(("precision", r) for r in report["precision"]), *(("resume", r) for r in report["resume"]),
            ("compile", report["compile"]), ("speed", report["speed"])]
    report["failures"] = [f"{' '.join(filter(None, (name, row.get('preset'))))}: {failure}"
                          for name, row in rows if row for failure in row["failures"]]
    report["passed"] = not report["failures"]
    return report


def summary(report: dict) -> str:
    """The report in a few readable lines."""
    m = report["machine"]
    where = f"{m['gpu']} (compute capability {m['compute_capability']})" if m["gpu"] else f"{m['cpu']} (CPU)"
    lines = [f"GPU check on {where}, torch {m['torch']}: {report['seconds']:.0f} s", ""]
    for row in report["precision"]:
        lines.append(_line("precision", row, lambda r: (
            f"autocast {r['dtype']} (expected {r['expected_dtype']}), GradScaler "
            f"{'on, scale ' + format(r['scale'], 'g') if r['scaler_enabled'] else 'off'}, {r['steps']} steps, "
            f"losses {'finite' if r['losses_finite'] else 'NOT finite'}, {r['steps_per_s']:.0f} steps/s")))
    for row in report["resume"]:
        lines.append(_line("resume", row, lambda r: (
            f"killed at batch {r['killed_at_batch_of_epoch_2']}/{r['batches_per_epoch']} of epoch 2, "
            f"{(r['resumed_from'] or 'not resumed').rstrip('.')}; "
            f"{r['tensors_compared']} tensors, {r['differing']} differ "
            f"(deterministic algorithms, cudnn.benchmark {r['cudnn_benchmark_in_check']})")))
    if report["compile"]:
        lines.append(_line("compile", report["compile"], lambda r: (
            f"eager {r['eager_steps_per_s']:.0f} steps/s, reduce-overhead {r['compiled_steps_per_s']:.0f} steps/s "
            f"({r['speedup']:.2f}x, warm-up {r['warmup_s']:.0f} s); CUDA graphs "
            + ("used" if r["cuda_graphs_used"]
               else f"skipped {r['cudagraph_skips']}x: {'; '.join(r['skip_reasons'])}"))))
    lines += [f"{name:<10} skipped: {why}" for name, why in report["skipped"].items()]
    if report["speed"] and report["speed"].get("summary"):
        lines += ["", report["speed"]["summary"]]
    lines += ["", "PASS" if report["passed"] else f"FAIL ({len(report['failures'])}):"]
    lines += [f"  - {failure}" for failure in report["failures"]]
    return "\n".join(lines)


def _line(name: str, row: dict, describe) -> str:
    head = f"{name:<10} {row.get('preset', ''):<8} {'PASS' if not row['failures'] else 'FAIL'}"
    try:
        return f"{head}  {describe(row)}"
    except (KeyError, TypeError, ValueError):  # a check that crashed has no numbers to show
        return f"{head}  {row['failures'][0][:200]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: the GPU if there is one)")
    parser.add_argument("--quick", action="store_true", help="a few steps with small nets; no speed.py")
    parser.add_argument("--checks", nargs="+", choices=CHECKS, default=CHECKS, help="which checks (default: all)")
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/gpu-check-<machine>.json)")
    parser.add_argument("--break-resume", action="store_true",
                        help="sabotage the resumed run (it forgets its noise RNG) to see the resume check fail")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    report = run_check(device, QUICK if args.quick else FULL, args.checks, sabotage=args.break_resume)
    path = args.out or RESULTS_DIR / f"gpu-check-{report['machine']['slug']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(summary(report))
    print(f"\nWrote {path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
