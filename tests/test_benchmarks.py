"""Smoke tests of the benchmarks: tiny settings, sane numbers (no timing); gpu_check.py's CPU mode passes and fails."""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from repo_root import ROOT

from dcganlib import checkpoint, data
from dcganlib.config import Config
from dcganlib.metrics import mnist_5k_split
from dcganlib.train import Trainer
from tools.photos import write_faces

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def speed():
    return importlib.import_module("benchmarks.speed")


@pytest.fixture(scope="module")
def report(speed):
    tiny = speed.Settings(batch_size=8, warmup=1, repeats=2, window_s=0.001, ablation_repeats=1,
                          ablation_window_s=0.001, matmul_size=64, matmul_repeats=2, latency_runs=2)
    # Every Trainer re-reads the mnist-5k CSV; read it once for the whole run.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_mnist_5k", functools.cache(data.load_mnist_5k))
        return speed.run_benchmark(("mnist28",), tiny, device="cpu", ablation_presets=("mnist28",), log=lambda _: None)


def test_throughput_has_both_paths_and_a_ratio(report):
    (row,) = report["throughput"]
    assert row["preset"] == "mnist28" and row["flops_per_step"] > 0
    for name in ("reference", "dcganlib"):
        path = row[name]
        assert len(path["images_per_s"]) == 2 and all(rate > 0 for rate in path["images_per_s"])
        assert path["median_images_per_s"] > 0 and path["median_images_per_cpu_s"] > 0
        assert path["peak_memory_bytes"] >= 0
        assert set(path["fraction_of_peak"]) == {"fp32", "mixed"}
    assert row["ratio"] > 0 and row["ratio_cpu_time"] > 0


def test_peaks_ablation_latency_and_targets(report):
    assert all(peak["median_flops_per_s"] > 0 for peak in report["matmul_peak"].values())
    (ablation,) = report["ablation"]
    assert set(ablation["variants"]) == {"fp32 NCHW", "fp32 NHWC", "bf16 NCHW", "bf16 NHWC"}
    assert all(rate > 0 for rate in ablation["variants"].values())
    assert report["slider_latency"]["median_ms"] > 0
    assert [t["target"].split(":")[0] for t in report["targets"]] == ["cpu mnist28", "slider"]
    assert report["machine"]["slug"].startswith("cpu-")


def test_markdown_and_json(speed, report, tmp_path):
    table = speed.markdown(report)
    assert "| mnist28 |" in table and "lib/ref" in table and ("PASS" in table or "FAIL" in table)
    path = speed.save(report, tmp_path / "speed.json")
    assert json.loads(path.read_text())["throughput"][0]["preset"] == "mnist28"


@pytest.fixture(scope="module")
def quality():
    return importlib.import_module("benchmarks.quality")


def test_quality_comparison_runs_both_loops_over_seeds(quality, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quality, "SAMPLES", 200)
    probes = {"no EMA": (0.0, False, False), "EMA 0.999": (0.999, True, True),
              "EMA 0.5 without warm-up": (0.5, False, True), "EMA 0.999, live statistics": (0.999, True, False)}
    row = quality.compare("mnist28", epochs=2, seeds=(0, 1), variants=("dcganlib",), probes=probes, g_features=8,
                          d_features=8, batch_size=500)
    probed = {f"dcganlib, {name}" for name in probes}
    assert set(row["curves"]) == {"reference", "dcganlib", *probed}
    for name, runs in row["curves"].items():
        assert len(runs) == 2, f"{name}: one curve per seed"
        for curve in runs:
            assert [p["epoch"] for p in curve[:2]] == [1, 2]
            assert all(p["fid"] > 0 and p["n_fake"] == quality.SAMPLES and 1 <= p["classes"] <= 10 for p in curve)
            assert all(0 <= p["precision"] <= 1 and 0 <= p["recall"] <= 1 and p["kid"] > -0.1 for p in curve)
            assert all(a["seconds"] < b["seconds"] for a, b in zip(curve, curve[1:], strict=False))
    # dcganlib keeps training until it has had at least each reference run's time.
    for reference, library in zip(row["curves"]["reference"], row["curves"]["dcganlib"], strict=True):
        assert library[-1]["seconds"] >= reference[-1]["seconds"]
    # A probe with the Trainer's own decay and warm-up is the Trainer's EMA; the others are other generators.
    fids = {name: [[p["fid"] for p in curve] for curve in runs] for name, runs in row["curves"].items()}
    assert fids["dcganlib, EMA 0.999"] == fids["dcganlib"]
    others = ("dcganlib, no EMA", "dcganlib, EMA 0.5 without warm-up", "dcganlib, EMA 0.999, live statistics")
    assert len({str(fids[name]) for name in ("dcganlib", *others)}) == 4
    summary = row["summary"]
    last = [curve[1]["fid"] for curve in row["curves"]["dcganlib, no EMA"]]
    assert summary["dcganlib, no EMA"]["fid"] == {"median": round(sum(last) / 2, 2), "min": min(last), "max": max(last)}
    assert summary["reference"]["ratio_equal_epochs"] == summary["reference"]["ratio_equal_time"] == 1.0  # by seed
    assert summary["dcganlib"]["ratio_equal_epochs"] == pytest.approx(
        summary["dcganlib"]["fid"]["median"] / summary["reference"]["fid"]["median"], abs=1e-3)
    report = {"machine": {"cpu": "test cpu", "cores": 2, "torch": "x"}, "floor": quality.floor(), "rows": [row]}
    assert report["floor"]["train_4000"]["fid"] < report["floor"]["train_1000"]["fid"] < 20
    text = quality.markdown(report)
    assert "| mnist28 | 2 | 2 | dcganlib, no EMA |" in text and "Real-vs-real floor" in text
    assert "| KID | precision | recall |" in text and 0 <= summary["dcganlib"]["recall"]["median"] <= 1
    assert quality.plot(report, tmp_path / "quality.png").stat().st_size > 0
    # Saved reports are printed (and drawn) together without training again.
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(report))
    monkeypatch.setattr(quality, "FIGURE", tmp_path / "together.png")
    quality.main(["--from-json", str(saved), str(saved), "--figure"])
    printed = capsys.readouterr().out
    assert printed.count("| mnist28 | 2 | 2 | dcganlib, no EMA |") == 2 and (tmp_path / "together.png").is_file()


def test_seeds_train_in_parallel_processes_and_come_back_in_seed_order(quality):
    tiny = {"g_features": 8, "d_features": 8, "batch_size": 500}
    row = quality.compare("mnist28", epochs=3, seeds=(0, 1), probes={}, library_epochs=4, every=2, jobs=2, **tiny)
    for curve in row["curves"]["reference"]:
        assert [p["epoch"] for p in curve] == [2, 3]  # every 2nd epoch, and the last
    for curve in row["curves"]["dcganlib"]:
        assert [p["epoch"] for p in curve][:3] == [2, 3, 4]  # and the reference's length, and its own
    assert set(row["summary"]["dcganlib"]["final"]) == {"fid", "classes", "seconds"}
    threads = torch.get_num_threads()
    try:
        alone = quality.seed_curves("mnist28", 3, 1, probes={}, library_epochs=4, every=2, threads=1, **tiny)
    finally:
        torch.set_num_threads(threads)
    assert [p["fid"] for p in alone["reference"]] == [p["fid"] for p in row["curves"]["reference"][1]]


def test_an_ema_probe_without_warm_up_averages_from_the_initial_weights(quality, tmp_path):
    config = Config.from_preset("mnist28", dataset="mnist-5k", g_features=4, d_features=4, batch_size=1000)
    trainer = Trainer(config, tmp_path, progress=False, log=lambda message: None)
    expected = [p.detach().clone() for p in trainer.generator.parameters()]
    probes = quality.EmaProbes(trainer, {"half": (0.5, False, False), "live": (0.0, False, False)})
    step_and_average = trainer.train_step

    def by_hand(real, labels=None):
        stats = step_and_average(real, labels)
        for mean, weight in zip(expected, trainer.generator.parameters(), strict=True):
            mean.mul_(0.5).add_(weight.detach(), alpha=0.5)
        return stats

    trainer.train_step = by_hand
    trainer.fit(epochs=1)  # 4 steps
    assert set(probes.samplers()) == {"half", "live"}
    for mean, average in zip(expected, probes.copies["half"][0].parameters(), strict=True):
        torch.testing.assert_close(average, mean)
    live = probes.samplers()["live"](torch.zeros(2, config.z_dim, 1, 1))
    torch.testing.assert_close(live, trainer.generator.eval()(torch.zeros(2, config.z_dim, 1, 1)).detach())


def test_at_time_takes_the_newest_point_trained_within_the_time(quality):
    curve = [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.0}, {"epoch": 3, "seconds": 6.0}]
    assert quality.at_time(curve, 5.9)["epoch"] == 2
    assert quality.at_time(curve, 6.0)["epoch"] == 3
    assert quality.at_time(curve, 1.0)["epoch"] == 1


def run_gpu_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """benchmarks/gpu_check.py --device cpu --quick as a user runs it: its exit, output and JSON report."""
    # One thread per process: the same sums in every run, and no spinning OpenMP threads on a busy 2-core machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done, json.loads(out.read_text())


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    return run_gpu_check(tmp_path_factory.mktemp("gpu-check") / "check.json")


def test_gpu_check_cpu_mode_passes(gpu_check):
    done, report = gpu_check
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert report["passed"] and report["failures"] == [] and "\nPASS\n" in done.stdout
    assert [row["preset"] for row in report["precision"]] == ["mnist28", "dcgan64"]
    for row in report["precision"]:  # bf16 on a CPU with bf16 in hardware, else fp32; never a GradScaler
        assert row["dtype"] == row["expected_dtype"] in ("bf16", "fp32") and not row["scaler_enabled"]
        assert row["losses_finite"] and all(math.isfinite(value) for value in row["last"].values())
    (resume,) = report["resume"]
    assert resume["exact"] and resume["differing"] == 0 and resume["tensors_compared"] > 50
    assert resume["newest_checkpoint_at_kill"] == "ckpt_epoch_0001.pt"
    assert resume["resumed_from"].startswith("Resumed from epoch 1 ") and resume["sabotage"] is None
    assert resume["deterministic_algorithms"] and resume["cudnn_benchmark_in_check"] is False
    assert report["compile"] is None and report["speed"] is None and set(report["skipped"]) == {"compile", "speed"}


def test_gpu_check_fails_when_the_resume_is_broken(tmp_path):
    done, report = run_gpu_check(tmp_path / "broken.json", "--checks", "resume", "--break-resume")
    assert done.returncode == 1 and not report["passed"] and "\nFAIL (1):" in done.stdout
    (resume,) = report["resume"]
    assert resume["sabotage"] == "noise RNG state not restored" and not resume["exact"]
    assert any(path.startswith("generator.") for path in resume["differences"])
    assert "differ from the uninterrupted run's" in report["failures"][0]


def test_checkpoint_differences_are_bit_for_bit():
    child_run = importlib.import_module("tools.child_run")
    state = {"w": torch.tensor([1.0, float("nan")]), "opt": {"step": 3, "betas": (0.5, 0.999)}, "seconds": [1.2]}
    same = {"w": torch.tensor([1.0, float("nan")]), "opt": {"step": 3, "betas": (0.5, 0.999)}, "seconds": [9.9]}
    assert child_run.differences(state, same, skip=("seconds",)) == []
    assert child_run.differences(state, same) == ["seconds[0]"]
    other = {"w": torch.tensor([1.0, -0.0]).to(torch.float64), "opt": {"step": 4, "betas": (0.5, 0.999)},
             "seconds": [1.2]}
    assert child_run.differences(state, other) == ["w", "opt.step"]
    assert child_run.count_tensors(state) == 1


@pytest.fixture(scope="module")
def recipes(quality):
    return importlib.import_module("benchmarks.recipes")


def test_the_recipe_folder_holds_the_same_number_of_each_training_digit(recipes, tmp_path):
    folder = recipes.write_folder(tmp_path, count=30)
    files = sorted(folder.rglob("*.png"))
    assert [path.parent.name for path in files] == [str(digit) for digit in range(10) for _ in range(3)]
    images, labels = mnist_5k_split("train")
    first_seven = data.load_dataset(f"folder:{folder / '7'}", image_size=28, channels=1)[0]
    expected = images[labels == 7][0].float().div(127.5).sub(1)
    torch.testing.assert_close(first_seven, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="multiple of 10"):
        recipes.write_folder(tmp_path / "odd", count=25)


def test_recipes_are_compared_over_seeds_on_the_folder(recipes, tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "SAMPLES", 100)
    folder = recipes.write_folder(tmp_path / "digits", count=40)
    row = recipes.compare(folder, seeds=(0, 1), recipes=("demo", "DiffAugment"), epochs=4, every=2)
    assert row["count"] == 40 and set(row["curves"]) == {"demo", "DiffAugment"}
    for runs in row["curves"].values():
        assert [[(p["epoch"], p["steps"]) for p in run] for run in runs] == [[(2, 2), (4, 4)]] * 2
    assert row["curves"]["demo"][0] != row["curves"]["DiffAugment"][0]  # the recipe reached the training
    last = [run[-1]["fid"] for run in row["curves"]["demo"]]
    assert row["summary"]["demo"]["fid"]["median"] == round(sum(last) / 2, 2)
    text = recipes.markdown({"machine": {"cpu": "test cpu"}, "result": row})
    assert "40 digits in a folder" in text and "| DiffAugment |" in text


@pytest.fixture(scope="module")
def lottery(quality):
    return importlib.import_module("benchmarks.lottery")


def test_a_run_exits_the_blob_phase_at_the_first_epoch_that_draws_every_class(lottery):
    assert lottery.exit_epoch([1, 4, 10, 9, 10]) == 3
    assert lottery.exit_epoch([1, 9, 9]) is None
    runs = [{"seed": seed, "precision": precision, "exit_epoch": exit, "fid": {"20": fid}}
            for seed, precision, exit, fid in [(0, "bf16", None, 200.0), (1, "bf16", 8, 60.0), (2, "bf16", 12, 90.0),
                                                (0, "fp32", 7, 70.0)]]
    summary = lottery.summarise(runs, epochs=20)
    assert summary["bf16"]["exited"] == 2 and summary["bf16"]["not_exited_seeds"] == [0]
    assert summary["bf16"]["exit_epoch"] == {"median": 10, "min": 8, "max": 12}
    assert summary["fp32"]["runs"] == 1 and summary["fp32"]["fid"]["20"]["median"] == 70.0


def test_the_lottery_counts_the_classes_after_every_epoch_of_every_seed_and_precision(lottery, recipes, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(lottery, "SAMPLES", 100)
    folder = recipes.write_folder(tmp_path / "digits", count=40)
    result = lottery.lottery("demo", seeds=(0, 1), precisions=("fp32",), epochs=2, fid_at=(1,),
                             dataset=f"folder:{folder}", augment="translation")
    runs = result["runs"]
    assert [(run["seed"], run["precision"]) for run in runs] == [(0, "fp32"), (1, "fp32")]
    assert all(len(run["classes"]) == 2 and 1 <= min(run["classes"]) for run in runs)
    assert all(list(run["fid"]) == ["1", "2"] for run in runs) and runs[0]["fid"] != runs[1]["fid"]
    assert result["overrides"]["augment"] == "translation" and result["summary"]["fp32"]["runs"] == 2
    text = lottery.markdown({"machine": {"cpu": "test cpu"}, "result": result})
    assert "augment=translation" in text and "FID at epoch 1 | FID at epoch 2 |" in text and "| fp32 |" in text


def test_the_data_feed_benchmark_measures_both_feeds_preparing_loading_and_a_rerun(tmp_path):
    data_feed = importlib.import_module("benchmarks.data_feed")
    result = data_feed.run_benchmark(300, 1, torch.device("cpu"), tmp_path, log=lambda _: None)
    assert result["images"] == 300 and set(result["feed_images_per_s"]) == {"examples", "dcganlib"}
    assert all(rate > 0 for rate in result["feed_images_per_s"].values())
    decoders = result["decoders_images_per_s"]
    assert len(decoders) == 3 and all(rate > 0 for rate in decoders.values())
    assert result["feed_ratio"] == result["feed_images_per_s"]["dcganlib"] / result["feed_images_per_s"]["examples"]
    assert result["prepare_s"] > 0 and result["load_s"] > 0 and result["prepare_cores"] > 0
    assert set(result["rerun"]) == {"total_s", "import_s", "trainer_s", "first_step_s"}
    assert result["rerun"]["total_s"] >= result["rerun"]["first_step_s"] > 0
    (prepared,) = (tmp_path / "data" / "prepared").glob("*.npy")
    assert prepared.name.endswith("-64px-rgb.npy")
    text = data_feed.markdown({"machine": {"cpu": "test cpu", "cores": 2, "torch": torch.__version__},
                               "result": result})
    assert "| feed ratio |" in text and "300 JPEGs of 178 x 218 px" in text


EXAMPLES_STAND_IN = """
import argparse, json, pathlib
parser = argparse.ArgumentParser()
for flag in ("--dataset", "--dataroot", "--imageSize", "--batchSize", "--niter", "--manualSeed", "--outf"):
    parser.add_argument(flag)
parser.add_argument("--accel", action="store_true")
opt = parser.parse_args()
pathlib.Path(opt.outf).mkdir()
(pathlib.Path(opt.outf) / "options.json").write_text(json.dumps(vars(opt)))
"""


def test_the_end_to_end_comparison_runs_pytorch_examples_main_and_dcganlibs_cli_on_the_folder(tmp_path):
    """pytorch/examples' main.py is not part of this repository: a stand-in records the options it is given."""
    data_feed = importlib.import_module("benchmarks.data_feed")
    faces = write_faces(tmp_path / "faces" / "all", 130).parent
    stand_in = tmp_path / "main.py"
    stand_in.write_text(EXAMPLES_STAND_IN)
    result = data_feed.end_to_end(faces, tmp_path, stand_in, 1, torch.device("cpu"))
    options = json.loads((tmp_path / "examples-out" / "options.json").read_text())
    assert options == {"dataset": "folder", "dataroot": str(faces), "imageSize": "64", "batchSize": "128",
                       "niter": "1", "manualSeed": "0", "outf": str(tmp_path / "examples-out"), "accel": False}
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "end-to-end-run"))
    assert saved["epoch"] == 1 and saved["config"]["preset"] == "celeba64" and saved["config"]["channels"] == 3
    assert len(list((tmp_path / "end-to-end-data" / "prepared").glob("*-64px-rgb.npy"))) == 1
    assert result["ratio"] == result["seconds"]["examples"] / result["seconds"]["dcganlib"] > 0
