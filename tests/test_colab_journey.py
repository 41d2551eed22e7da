"""The learner's whole journey on Colab, notebooks 01 → 07, each in a fresh simulated runtime (tests/colab_sim.py).

Every runtime is a new machine with its own host name, running Colab's Python and package versions. Notebook 04 is
killed with SIGKILL on its kernel in epoch 2 and run again from the top, at once, in a new runtime: it must take the
run over from the dead runtime, resume from Drive and end bit-identical to an uninterrupted run of the same notebook
in a third runtime; 05 then opens that run by its Drive path on yet another machine, 06 trains a conditional
run on Drive on one more, and 07 prepares faces from a zip on Drive, is killed and resumes on a new machine.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from colab_sim import ColabSimulator, notebook_text, wait_for
from kit import assert_same_state

import dcganlib
from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.runs import RunDir
from tools.photos import write_faces

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "win32", reason="the simulator uses POSIX signals and a shell")]

# The course net at half width on the 5,000 digits: about 2 s an epoch here, ample time to kill it inside epoch 2.
# No RUN_NAME: the notebook names the run after its settings. The failure-modes experiment is tested off Colab.
TRAINING = {"DATASET": "mnist-5k", "PRESET": "mnist28", "EPOCHS": 3, "BATCH_SIZE": 64, "SEED": 0, "PLAIN_STEPS": 20,
            "COMPARE_EPOCHS": 0, "CONFIG_OVERRIDES": {"g_features": 32, "d_features": 16}}
RUN_NAME = Config.from_preset("mnist28", dataset="mnist-5k", epochs=3, batch_size=64, seed=0, g_features=32,
                              d_features=16).run_name()
# A runtime's Python and NumPy RNGs start from the OS's entropy; wall time never repeats.
NOT_COMPARED = ("history.epoch.seconds", "rng.python", "rng.numpy")
COLAB_VERSIONS = Path(__file__).resolve().parent / "colab_versions.txt"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> ColabSimulator:
    return ColabSimulator(tmp_path_factory.mktemp("colab"))


def assert_installed_from_git(text: str, runtime) -> None:
    """The set-up cell installed the pinned release into the runtime, not the checkout."""
    assert f"dcganlib {dcganlib.__version__} from {runtime.site_packages / 'dcganlib'};" in text
    assert "WARNING" not in text


def test_runtimes_run_colabs_python_and_package_versions(sim):
    runtime = sim.new_runtime()
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)$", COLAB_VERSIONS.read_text(), re.MULTILINE))
    names = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "ipykernel", "IPython", "mlxtend", "psutil")
    found = runtime.python_code("import importlib.metadata as m; "
                                f"print(' '.join(m.version(name) for name in {names!r}))").split()
    assert dict(zip(names, found, strict=True)) == {name: pins[name.lower()] for name in names}
    print(f"The Colab journey runs on {sim.python_version} with tests/colab_versions.txt")


def test_lesson_notebooks_install_the_release_in_fresh_runtimes(sim, tmp_path):
    for name in ("01_generator.ipynb", "02_discriminator.ipynb", "03_losses.ipynb"):
        runtime = sim.new_runtime()
        assert_installed_from_git(runtime.run(name, tmp_path / name), runtime)


@pytest.fixture(scope="module")
def resumed_run(sim, tmp_path_factory) -> tuple[str, str]:
    """Notebook 04 killed in epoch 2, then run again at once from the top on another machine; returns its text
    output and the killed runtime's host name."""
    out = tmp_path_factory.mktemp("04")
    killed = sim.new_runtime()
    drive_run = RunDir(sim.drive / "dcgan" / RUN_NAME)
    process = killed.start("04_training.ipynb", out / "04-killed.ipynb", **TRAINING)
    wait_for(drive_run.checkpoint(1).exists, "epoch 1's checkpoint on Drive", process)
    killed.kill_kernel()
    process.wait(timeout=120)
    assert not drive_run.checkpoint(2).exists(), "the kill came after epoch 2"
    assert drive_run.lock_file.exists(), "the killed trainer's lock is left behind, as on Colab"
    assert sim.calls() == ["mount " + str(sim.content / "drive")]
    runtime = sim.new_runtime()
    text = runtime.run("04_training.ipynb", out / "04-resumed.ipynb", **TRAINING)
    assert_installed_from_git(text, runtime)
    return text, killed.host


def test_training_resumes_at_once_on_a_new_machine_after_its_kernel_is_killed(sim, resumed_run, tmp_path):
    text, killed_host = resumed_run
    run_path = sim.content / "drive" / "MyDrive" / "dcgan" / RUN_NAME
    assert f"Took over {run_path} from process " in text and f"on host {killed_host} (training since" in text
    assert "Resumed from epoch 1 (" in text and f"Starting fresh in {run_path}" not in text
    assert "plain-step warm-up below is skipped" in text
    assert "No GPU attached" in text  # the device check near the top
    # The last cell pushes Drive's pending uploads and unmounts it.
    assert sim.calls()[-2:] == ["mount " + str(sim.content / "drive"), "flush_and_unmount"]
    assert not (sim.content / "drive").exists()

    straight = sim.new_runtime()
    straight.run("04_training.ipynb", tmp_path / "04-straight.ipynb", **TRAINING, RUN_NAME="straight")
    final = checkpoint.load_checkpoint(RunDir(sim.drive / "dcgan" / RUN_NAME).checkpoint(3))
    expected = checkpoint.load_checkpoint(RunDir(sim.drive / "dcgan" / "straight").checkpoint(3))
    assert_same_state(expected, final, skip=NOT_COMPARED)


def test_latent_walks_open_the_run_by_its_drive_path(sim, resumed_run, tmp_path):
    """A fresh runtime: nothing has mounted Drive when notebook 05 loads the run from it."""
    runtime = sim.new_runtime()
    drive_path = sim.content / "drive" / "MyDrive" / "dcgan" / RUN_NAME
    runtime.run("05_latent_walks.ipynb", tmp_path / "05.ipynb", RUN_DIR=str(drive_path))
    # Colab's ipywidgets 7.7.1 draws in Colab's own widget manager: no switch to the custom one.
    assert sim.calls()[-1] == "mount " + str(sim.content / "drive")
    outputs = [out for cell in nbformat.read(tmp_path / "05.ipynb", as_version=4).cells
               for out in cell.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in outputs)


def test_the_conditional_notebook_runs_on_yet_another_machine(sim, tmp_path):
    runtime = sim.new_runtime()
    text = runtime.run("06_conditional_gan.ipynb", tmp_path / "06.ipynb", EPOCHS=1, PLAIN_STEPS=5, SEED=0,
                       RUN_NAME="conditional", CONFIG_OVERRIDES={"g_features": 16})
    assert_installed_from_git(text, runtime)
    assert "10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in text and "Starting fresh" in text
    assert (sim.drive / "dcgan" / "conditional" / "generator.pt").is_file()


# The 64 px colour net at an eighth of its width on 800 cartoon faces in a zip on Drive: about 3 s an epoch here.
FACES = {"EPOCHS": 3, "BATCH_SIZE": 16, "SEED": 0, "DECODE_SAMPLE": 20, "RUN_NAME": "faces",
         "CONFIG_OVERRIDES": {"g_features": 8, "d_features": 8}}


def test_faces_from_a_zip_on_drive_are_prepared_once_and_a_killed_run_resumes_exactly(sim, tmp_path):
    """Notebook 07 prepares a zip of photos on Drive, is killed in epoch 2, and runs again at once on a new machine:
    it finds the prepared faces on Drive, says so, decodes nothing, and ends bit-identical to an uninterrupted run."""
    with zipfile.ZipFile(sim.drive / "faces.zip", "w") as archive:
        for path in sorted(write_faces(tmp_path / "faces", 800).iterdir()):
            archive.write(path, f"faces/{path.name}")
    source = {"DATASET": f"folder:{sim.content / 'drive' / 'MyDrive' / 'faces.zip'}"}
    drive_run = RunDir(sim.drive / "dcgan" / "faces")
    killed = sim.new_runtime()
    process = killed.start("07_faces_64px.ipynb", tmp_path / "07-killed.ipynb", **FACES, **source)
    wait_for(drive_run.checkpoint(1).exists, "epoch 1's checkpoint on Drive", process)
    killed.kill_kernel()
    process.wait(timeout=120)
    assert not drive_run.checkpoint(2).exists(), "the kill came after epoch 2"
    prepared = sorted(path.name for path in (sim.drive / "dcgan" / "data" / "prepared").iterdir())
    assert len(prepared) == 2 and prepared[0].startswith("folder-faces-") and prepared[0].endswith("-64px-rgb.json")

    text = sim.new_runtime().run("07_faces_64px.ipynb", tmp_path / "07-resumed.ipynb", **FACES, **source)
    assert "Loaded prepared data " in text and "Preparing" not in text
    assert f"on host {killed.host} (training since" in text and "Resumed from epoch 1 (" in text
    straight = {**FACES, "RUN_NAME": "faces-straight"}
    sim.new_runtime().run("07_faces_64px.ipynb", tmp_path / "07-straight.ipynb", **straight, **source)
    expected = checkpoint.load_checkpoint(RunDir(sim.drive / "dcgan" / "faces-straight").checkpoint(3))
    assert_same_state(expected, checkpoint.load_checkpoint(drive_run.checkpoint(3)), skip=NOT_COMPARED)


def test_the_set_up_cell_stops_on_a_runtime_older_than_supported_and_upgrades_nothing(sim, tmp_path):
    """Colab's 2026.01 runtime version has torch 2.9.0 and torchvision 0.24.0, older than the floors."""
    runtime = sim.new_runtime(older={"torch": "2.9.0", "torchvision": "0.24.0"})
    process = runtime.start("01_generator.ipynb", tmp_path / "01-old.ipynb")
    log, _ = process.communicate(timeout=600)
    assert process.returncode != 0, "the notebook went on past its set-up cell"
    text = notebook_text(tmp_path / "01-old.ipynb") + log
    assert re.search(r"This Colab runtime \((torch 2\.9\.0|torchvision 0\.24\.0)(, torchvision 0\.24\.0)?\) is "
                     r"older than dcganlib v[\d.]+ supports: choose Runtime ▸ Change runtime type ▸ Runtime version "
                     r"▸ Latest \(or 2026\.04 or newer\), then Run all\.", text), text[-3000:]
    found = runtime.python_code("import importlib.metadata as m; print(m.version('torch'), m.version('torchvision'))")
    assert found == "2.9.0 0.24.0"
    assert not (runtime.site_packages / "dcganlib").exists()


def train_command(config: Path, run_dir: Path, epochs: int) -> list[str]:
    """The CLI training TRAINING's half-width course net (about 2 s an epoch here) into `run_dir`."""
    if not config.exists():
        Config.from_preset("mnist28", dataset="mnist-5k", batch_size=64, seed=0, g_features=32,
                           d_features=16).save_yaml(config)
    return ["-m", "dcganlib", "train", "--config", str(config), "--epochs", str(epochs), "--run-dir", str(run_dir)]


def finished(process, timeout: float = 600) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-6000:]
    return out


def test_a_run_whose_drive_drops_out_goes_on_locally_and_a_rerun_ends_bit_identical(sim, tmp_path):
    """`python -m dcganlib train` on Drive; Drive's mount is pulled away after epoch 1 and cannot come back: the run
    writes nothing under the mount point, goes on with its files on the runtime's disk and ends cleanly. Once Drive
    is back, the same command in the same runtime moves them onto Drive and trains on, ending bit-identical to a run
    that never lost Drive."""
    run_dir = sim.content / "drive" / "MyDrive" / "dcgan" / "dropped"
    cloud_run = RunDir(sim.drive / "dcgan" / "dropped")
    runtime = sim.new_runtime()
    runtime.install()
    process = runtime.start_command(*train_command(tmp_path / "config.yaml", run_dir, 3))
    wait_for(cloud_run.checkpoint(1).exists, "epoch 1's checkpoint on Drive", process)
    sim.drive_goes_down()
    runtime.unmount_drive(process.pid)
    out = finished(process)
    pending = sim.content / "drive-pending" / "MyDrive" / "dcgan" / "dropped"
    assert out.count("the run goes on with its files in") == 1
    assert f"Google Drive is not mounted at {sim.content / 'drive'}: the run goes on with its files in {pending} on " \
           "this runtime's disk" in out
    assert "Traceback" not in out and f"{pending / 'checkpoints' / 'ckpt_epoch_0003.pt'}" in out
    assert sorted(path.name for path in (sim.content / "drive").iterdir()) == []  # nothing under the mount point
    assert not cloud_run.checkpoint(2).exists() and (pending / "checkpoints" / "ckpt_epoch_0003.pt").is_file()

    sim.drive_comes_back()
    out = finished(runtime.start_command(*train_command(tmp_path / "config.yaml", run_dir, 4)))
    assert "Google Drive is back: moved " in out and "Resumed from epoch 3 (" in out
    assert not pending.exists()
    straight = sim.new_runtime()
    straight.install()
    whole = sim.content / "drive" / "MyDrive" / "dcgan" / "whole"
    finished(straight.start_command(*train_command(tmp_path / "config.yaml", whole, 4)))
    expected = checkpoint.load_checkpoint(RunDir(sim.drive / "dcgan" / "whole").checkpoint(4))
    assert_same_state(expected, checkpoint.load_checkpoint(cloud_run.checkpoint(4)), skip=NOT_COMPARED)
