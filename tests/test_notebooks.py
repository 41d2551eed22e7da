"""The notebook series off Colab: 04 and 05 run top to bottom in a fresh kernel of this venv, on mnist-5k, with
runs on local disk; every notebook is committed clean and Colab-ready. tests/test_colab_journey.py runs all five
in simulated Colab runtimes."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from colab_sim import notebook_text
from repo_root import ROOT

import dcganlib
from dcganlib import checkpoint
from dcganlib.catalog import DATASETS
from dcganlib.config import PRESETS
from tools.photos import write_faces

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_generator.ipynb", "02_discriminator.ipynb", "03_losses.ipynb", "04_training.ipynb",
         "05_latent_walks.ipynb", "06_conditional_gan.ipynb", "07_faces_64px.ipynb"]
# the notebooks that train, and ask Colab for a GPU
TRAINS = ("04_training.ipynb", "06_conditional_gan.ipynb", "07_faces_64px.ipynb")
SETUP_TITLE = "# @title Set-up (run once; installs dcganlib on Colab only)"
# Small enough for CI on two shared CPU cores (narrow networks: a few seconds per epoch); the notebooks' own
# defaults are the Colab values.
TRAINING = {"DATASET": "mnist-5k", "PRESET": "mnist28", "BATCH_SIZE": 128, "RUN_NAME": "ci", "SEED": 0,
            "PLAIN_STEPS": 20, "COMPARE_EPOCHS": 1, "CONFIG_OVERRIDES": {"g_features": 16, "d_features": 8}}


def _set_repo_url_module():
    spec = importlib.util.spec_from_file_location("set_repo_url", ROOT / "tools" / "set_repo_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


set_repo_url = _set_repo_url_module()


def execute(name: str, output: Path, **parameters) -> str:
    """Run a notebook in a fresh python3 kernel (this venv's), from notebooks/; returns all its text output."""
    pm.execute_notebook(NOTEBOOKS / name, output, parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3",
                        progress_bar=False, execution_timeout=300)
    return notebook_text(output)


@pytest.fixture(scope="module")
def training_run(tmp_path_factory) -> tuple[Path, str, str]:
    """Notebook 4 run twice in one run dir: 1 epoch, then up to 2 (a resume); returns (run dir, outputs)."""
    base = tmp_path_factory.mktemp("runs")
    first = execute("04_training.ipynb", base / "first.ipynb", EPOCHS=1, RUNS_BASE=str(base), **TRAINING)
    second = execute("04_training.ipynb", base / "second.ipynb", EPOCHS=2, RUNS_BASE=str(base), **TRAINING)
    return base / TRAINING["RUN_NAME"], first, second


def test_notebook_list_is_complete():
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean_and_colab_ready(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "clear outputs before committing"
    # Only the notebooks that train ask Colab for a GPU: the others run in seconds on the CPU, and a free user's GPU
    # time is scarce.
    if name in TRAINS:
        assert nb.metadata.accelerator == "GPU" and nb.metadata.colab.gpuType == "T4"
    else:
        assert "accelerator" not in nb.metadata and "gpuType" not in nb.metadata.colab
    assert nb.metadata.kernelspec.name == "python3"
    setup, parameters = code[:2]
    assert setup.source.startswith(SETUP_TITLE)
    assert setup.metadata.cellView == "form" and setup.metadata.jupyter.source_hidden is True
    assert "parameters" in parameters.metadata.get("tags", [])


@pytest.mark.parametrize("name", NAMES)
def test_notebook_urls_match_repo_url_file(name):
    url, owner, repo = set_repo_url.read_repo_url()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    badges = re.findall(r"\(https://colab\.research\.google\.com/github/[^)]+\)", nb.cells[0].source)
    assert badges == [f"(https://colab.research.google.com/github/{owner}/{repo}/blob/main/notebooks/{name})"]
    setup = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert re.findall(r'REPO_URL = "([^"]*)"', setup.source) == [url]
    assert 'f"dcganlib @ git+{REPO_URL}@{RELEASE}"' in setup.source


@pytest.mark.parametrize("name", NAMES)
def test_setup_cell_installs_the_release_of_this_library_version(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    setup = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert re.findall(r'RELEASE = "([^"]*)"', setup.source) == [f"v{dcganlib.__version__}"]
    assert set_repo_url.read_release() == f"v{dcganlib.__version__}"
    assert dcganlib.REPO_URL == set_repo_url.read_repo_url()[0]


def test_set_repo_url_rewrites_badges_setup_and_install_lines():
    text = ('[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]'
            '(https://colab.research.google.com/github/old/name/blob/main/notebooks/01_generator.ipynb)\n'
            '"REPO_URL = \\"https://github.com/old/name\\"\\n",\n'
            'pip install "dcganlib @ git+https://github.com/old/name.git"\n')
    new = set_repo_url.rewrite(text, "https://github.com/me/gan", "me", "gan")
    assert "old/name" not in new
    assert "colab.research.google.com/github/me/gan/blob/main/notebooks/01_generator.ipynb" in new
    assert 'REPO_URL = \\"https://github.com/me/gan\\"' in new
    assert "git+https://github.com/me/gan\"" in new
    assert set_repo_url.rewrite(new, "https://github.com/me/gan", "me", "gan") == new
    released = set_repo_url.rewrite('"RELEASE = \\"v0.1.0\\"  # the release\\n",', "https://github.com/me/gan", "me",
                                    "gan", "v0.3.0")
    assert released == '"RELEASE = \\"v0.3.0\\"  # the release\\n",'


def test_set_repo_url_rewrites_the_docs_site_address_and_mkdocs_repo():
    text = "[docs site](https://old.github.io/name/)\nrepo_url: https://github.com/old/name\n"
    new = set_repo_url.rewrite(text, "https://github.com/Me/gan", "Me", "gan")
    assert new == "[docs site](https://me.github.io/gan/)\nrepo_url: https://github.com/Me/gan\n"
    assert set_repo_url.rewrite(new, "https://github.com/Me/gan", "Me", "gan") == new


def param_choices(source: str, name: str) -> list[str]:
    """The choices of the Colab form field `name` in a parameters cell: NAME = ...  # @param ["a", "b"]."""
    found = re.search(rf'^{name} = .*# @param (\[.*\])$', source, re.MULTILINE)
    assert found, f"no @param list for {name}"
    return json.loads(found.group(1))


def test_training_form_offers_every_preset_and_data_set():
    nb = nbformat.read(NOTEBOOKS / "04_training.ipynb", as_version=4)
    parameters = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    assert sorted(param_choices(parameters.source, "PRESET")) == sorted(PRESETS)
    assert sorted(param_choices(parameters.source, "DATASET")) == sorted(DATASETS)


@pytest.mark.slow
def test_training_notebook_trains_and_resumes(training_run):
    run_dir, first, second = training_run
    assert f"Python {sys.executable}" in first, "the notebook ran in another Python than this venv's"
    assert "Starting fresh" in first and "plain-step warm-up below is skipped" not in first
    assert "Resumed from epoch 1" in second and "plain-step warm-up below is skipped" in second
    assert (run_dir / "checkpoints" / "ckpt_epoch_0002.pt").is_file()
    assert (run_dir / "progress.gif").is_file() and (run_dir / "generator.pt").is_file()


@pytest.mark.slow
def test_the_failure_modes_experiment_measures_both_settings_every_epoch(training_run):
    base = training_run[0].parent
    for name in ("mnist28", "demo"):
        history = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(base / f"modes-{name}"))["history"]
        assert history["epoch"]["epoch"] == [1] and history["epoch"]["fid"][0] > 0


@pytest.mark.slow
def test_latent_walks_notebook_runs_on_a_trained_run(training_run, tmp_path):
    run_dir = training_run[0]
    execute("05_latent_walks.ipynb", tmp_path / "05.ipynb", RUN_DIR=str(run_dir))


# The conditional course net at a quarter of G's width, two epochs: the rows of digits are not digits yet, but every
# cell runs, the run is written and resumed, and the exported generator keeps its classes.
CONDITIONAL = {"EPOCHS": 1, "PLAIN_STEPS": 5, "RUN_NAME": "conditional", "SEED": 0,
               "CONFIG_OVERRIDES": {"g_features": 16}}


@pytest.mark.slow
def test_the_conditional_notebook_trains_resumes_and_samples_the_class_asked_for(tmp_path):
    first = execute("06_conditional_gan.ipynb", tmp_path / "first.ipynb", RUNS_BASE=str(tmp_path), **CONDITIONAL)
    assert "Starting fresh" in first and "10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in first
    assert "conditional G, asked for 7: mean p(7) =" in first
    second = execute("06_conditional_gan.ipynb", tmp_path / "second.ipynb", RUNS_BASE=str(tmp_path),
                     **{**CONDITIONAL, "EPOCHS": 2})
    assert "Resumed from epoch 1" in second
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "conditional"))
    assert saved["epoch"] == 2 and saved["config"]["num_classes"] == 10


# The 64 px colour net at an eighth of its width on 96 cartoon faces (tools/photos.py), two epochs in two runs.
FACES = {"EPOCHS": 1, "BATCH_SIZE": 16, "RUN_NAME": "faces", "SEED": 0, "DECODE_SAMPLE": 20,
         "CONFIG_OVERRIDES": {"g_features": 8, "d_features": 8}}


@pytest.mark.slow
def test_the_faces_notebook_prepares_once_trains_resumes_and_walks(tmp_path):
    faces = write_faces(tmp_path / "photos", 96)
    where = {"DATASET": f"folder:{faces}", "DATA_ROOT": str(tmp_path / "data"), "RUNS_BASE": str(tmp_path)}
    first = execute("07_faces_64px.ipynb", tmp_path / "first.ipynb", **FACES, **where)
    assert f"Preparing {faces} once: 96 images to 64 px RGB" in first and "Starting fresh" in first
    assert "96 faces as one (96, 3, 64, 64) uint8 array" in first
    assert re.search(r"decoding image files, one core: +[\d,]+ images/s", first)
    second = execute("07_faces_64px.ipynb", tmp_path / "second.ipynb", **{**FACES, "EPOCHS": 2}, **where)
    assert "Preparing" not in second and "Loaded prepared data " in second
    assert "Resumed from epoch 1" in second
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "faces"))
    assert saved["epoch"] == 2 and saved["config"]["image_size"] == 64 and saved["config"]["channels"] == 3
    assert (tmp_path / "faces" / "progress.gif").is_file() and (tmp_path / "faces" / "generator.pt").is_file()
