"""The learner's whole journey on Colab, notebooks 01 → 05, each in a fresh simulated runtime (tests/colab_sim.py).

Notebook 04 is killed with SIGKILL on its kernel after its first epoch, re-run from the top in a new runtime, and
must resume from Drive and end bit-identical to an uninterrupted run; 05 then opens that run by its Drive path.
"""

from __future__ import annotations

import sys

import nbformat
import pytest
import torch
from colab_sim import RUNTIME_THREADS, ColabSimulator, wait_for

import dcganlib
from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.train import Trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the simulator uses POSIX signals and a shell")

RUN_NAME = "journey"
# The course net at half width on the 5,000 digits: about 2 s an epoch here, ample time to kill it inside epoch 2.
TRAINING = {"DATASET": "mnist-5k", "PRESET": "mnist28", "EPOCHS": 3, "BATCH_SIZE": 64, "RUN_NAME": RUN_NAME,
            "SEED": 0, "PLAIN_STEPS": 20, "CONFIG_OVERRIDES": {"g_features": 32, "d_features": 16}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> ColabSimulator:
    return ColabSimulator(tmp_path_factory.mktemp("colab"))


def assert_installed_from_git(text: str, runtime) -> None:
    """The set-up cell installed the pinned release into the runtime, not the checkout."""
    assert f"dcganlib {dcganlib.__version__} from {runtime.site_packages / 'dcganlib'};" in text
    assert "WARNING" not in text


def assert_same_training_state(saved: dict, trainer: Trainer) -> None:
    expected = trainer.state_dict()
    for key in ("generator", "discriminator", "ema_generator"):
        assert saved[key].keys() == expected[key].keys()
        for name in expected[key]:
            assert torch.equal(saved[key][name], expected[key][name]), f"{key}.{name} differs"
    for key in ("opt_g", "opt_d"):
        for index, state in expected[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(saved[key]["state"][index][name], value), f"{key}[{index}].{name} differs"
    assert torch.equal(saved["fixed_noise"], expected["fixed_noise"])
    assert torch.equal(saved["rng"]["noise"], expected["rng"]["noise"])
    assert torch.equal(saved["rng"]["torch"], expected["rng"]["torch"])
    assert saved["history"]["batch"] == expected["history"]["batch"]
    assert (saved["epoch"], saved["step"], saved["batch_in_epoch"]) == (expected["epoch"], expected["step"], 0)


def test_lesson_notebooks_install_the_release_in_fresh_runtimes(sim, tmp_path):
    for name in ("01_generator.ipynb", "02_discriminator.ipynb", "03_losses.ipynb"):
        runtime = sim.new_runtime()
        assert_installed_from_git(runtime.run(name, tmp_path / name), runtime)


@pytest.fixture(scope="module")
def resumed_run(sim, tmp_path_factory):
    """Notebook 04 killed after epoch 1, then run again from the top in a new runtime; returns its text output."""
    out = tmp_path_factory.mktemp("04")
    runtime = sim.new_runtime()
    drive_run = sim.drive / "dcgan" / RUN_NAME
    process = runtime.start("04_training.ipynb", out / "04-killed.ipynb", **TRAINING)
    wait_for((drive_run / "checkpoints" / "ckpt_epoch_0001.pt").exists, "epoch 1's checkpoint on Drive", process)
    runtime.kill_kernel()
    process.wait(timeout=120)
    assert not (drive_run / "checkpoints" / "ckpt_epoch_0002.pt").exists(), "the kill came after epoch 2"
    assert sim.calls() == ["mount " + str(sim.content / "drive")]
    runtime = sim.new_runtime()
    text = runtime.run("04_training.ipynb", out / "04-resumed.ipynb", **TRAINING)
    assert_installed_from_git(text, runtime)
    return text


def test_training_resumes_from_drive_after_its_kernel_is_killed(sim, resumed_run, tmp_path):
    assert "Resumed from epoch 1 (" in resumed_run and "Starting fresh" not in resumed_run
    assert "No GPU attached" in resumed_run  # the device check at the top
    # The last cell pushes Drive's pending uploads and unmounts it.
    assert sim.calls()[-2:] == ["mount " + str(sim.content / "drive"), "flush_and_unmount"]
    assert not (sim.content / "drive").exists()

    drive_run = sim.drive / "dcgan" / RUN_NAME
    final = checkpoint.load_checkpoint(drive_run / "checkpoints" / "ckpt_epoch_0003.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(RUNTIME_THREADS)
    try:
        straight = Trainer(Config.load_yaml(drive_run / "config.yaml"), tmp_path / "straight", progress=False,
                           log=lambda message: None)
        straight.fit()
    finally:
        torch.set_num_threads(threads)
    assert_same_training_state(final, straight)


def test_latent_walks_open_the_run_by_its_drive_path(sim, resumed_run, tmp_path):
    """A fresh runtime: nothing has mounted Drive when notebook 05 loads the run from it."""
    runtime = sim.new_runtime()
    drive_path = sim.content / "drive" / "MyDrive" / "dcgan" / RUN_NAME
    runtime.run("05_latent_walks.ipynb", tmp_path / "05.ipynb", RUN_DIR=str(drive_path))
    assert sim.calls()[-2:] == ["mount " + str(sim.content / "drive"), "enable_custom_widget_manager"]
    outputs = [out for cell in nbformat.read(tmp_path / "05.ipynb", as_version=4).cells
               for out in cell.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in outputs)
