"""Smoke test of benchmarks/speed.py: every measurement runs with tiny settings and returns sane numbers (no timing)."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path

import pytest

from dcganlib import data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
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
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.quality")


def test_quality_comparison_runs_both_loops(quality):
    row = quality.compare("mnist28", epochs=1, g_features=8, d_features=8, batch_size=500)
    for name in ("reference", "library", "library_equal_time"):
        assert row[name]["fid"] > 0 and row[name]["n_fake"] == quality.SAMPLES and row[name]["n_real"] == 1000
        assert 1 <= row[name]["classes"] <= 10
    assert row["library_equal_time"]["epochs"] >= 1
    assert row["ratio_equal_epochs"] == pytest.approx(row["library"]["fid"] / row["reference"]["fid"], rel=1e-2)
    report = {"machine": {"cpu": "test cpu", "cores": 2, "torch": "x"}, "floor": quality.floor(), "rows": [row]}
    assert report["floor"]["train_4000"]["fid"] < report["floor"]["train_1000"]["fid"] < 20
    text = quality.markdown(report)
    assert "| mnist28 | 1 |" in text and "Real-vs-real floor" in text


def test_precision_check_reports_both_paths(quality):
    check = quality.precision_check("mnist28", 1, seeds=(0,), g_features=8, d_features=8, batch_size=500)
    assert len(check["fast"]) == len(check["fp32"]) == 1 and all(f > 0 for f in check["fast"] + check["fp32"])
