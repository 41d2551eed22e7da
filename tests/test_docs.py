"""The docs site: built strictly from the README, docs/, the API docstrings and the notebooks with their
outputs; a page without a kernel shows each widget as its image or its text."""

from __future__ import annotations

import base64
import io
import os
import re

import nbformat
import pytest
from PIL import Image
from repo_root import ROOT

from tools import build_docs

NOTEBOOKS = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
OUTPUT_IMAGE = re.compile(r'<img[^>]+src="data:image/png;base64,([^"]+)"')


def _png(width: int = 4) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, width), 128).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _widget_notebook(state: dict, model_id: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output("display_data", data={
        build_docs.WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": "  5%|▌         | 1/20"})
    notebook.cells = [nbformat.v4.new_code_cell("latent_sliders(G)", outputs=[output])]
    notebook.metadata["widgets"] = {build_docs.WIDGET_STATE: {"state": state, "version_major": 2}}
    return notebook


def test_a_widget_with_an_image_is_shown_as_that_image():
    png = _png()
    state = {"box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_row"]}},
             "row": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_image"]}},
             "slider": {"model_name": "FloatSliderModel", "state": {}},
             "image": {"model_name": "ImageModel", "state": {}, "buffers": [
                 {"path": ["value"], "data": png, "encoding": "base64"}]}}
    notebook = build_docs.static_outputs(_widget_notebook(state, "box"))
    data = notebook.cells[0].outputs[0].data
    assert data["image/png"] == png and build_docs.WIDGET_VIEW not in data
    assert "widgets" not in notebook.metadata


def test_a_widget_without_an_image_keeps_its_text():
    state = {"bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_progress"]}},
             "progress": {"model_name": "FloatProgressModel", "state": {}}}
    data = build_docs.static_outputs(_widget_notebook(state, "bar")).cells[0].outputs[0].data
    assert data == {"text/plain": "  5%|▌         | 1/20"}


def test_a_gif_is_shown_as_an_html_image():
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output("display_data", data={"image/gif": "R0lGODlh\n", "text/plain": "<Image>"})
    notebook.cells = [nbformat.v4.new_code_cell("Image(filename=gif)", outputs=[output])]
    data = build_docs.static_outputs(notebook).cells[0].outputs[0].data
    assert data["text/html"] == '<img src="data:image/gif;base64,R0lGODlh" alt="animation">'
    assert "image/gif" not in data


def test_the_kernels_thread_setting_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with build_docs.kernel_threads(1):
        assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.delenv("OMP_NUM_THREADS")
    with build_docs.kernel_threads(1):
        pass
    assert "OMP_NUM_THREADS" not in os.environ


def test_the_api_reference_covers_every_module():
    modules = {path.stem for path in (ROOT / "dcganlib").glob("*.py")}
    assert set(build_docs.API_MODULES) | set(build_docs.NOT_IN_API) == modules
    page = build_docs.api_page()
    assert all(f"::: dcganlib.{module}\n" in page for module in build_docs.API_MODULES)


def test_an_execution_is_reused_only_for_the_same_notebook_and_parameters(tmp_path):
    notebook = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    key = build_docs.source_key(notebook, {"EPOCHS": 12})
    assert build_docs.source_key(notebook, {"EPOCHS": 12}) == key
    assert build_docs.source_key(notebook, {"EPOCHS": 13}) != key
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), notebook)
    assert build_docs.source_key(notebook, {"EPOCHS": 12}) != key


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_page_shows_its_figures(docs_site, name):
    page = (docs_site / "notebooks" / name / "index.html").read_text(encoding="utf-8")
    images = OUTPUT_IMAGE.findall(page)
    assert images, f"{name}: no output figures"
    assert build_docs.WIDGET_VIEW not in page
    assert "Traceback" not in page


@pytest.mark.slow
def test_the_site_has_every_page(docs_site):
    home = (docs_site / "index.html").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        assert f'href="notebooks/{name}/"' in home
    for page in ("colab", "training", "multi-gpu", "results", "development"):
        assert (docs_site / "docs" / page / "index.html").is_file()
    api = (docs_site / "api" / "index.html").read_text(encoding="utf-8")
    assert "Trainer" in api and "plain_train_step" in api


@pytest.mark.slow
def test_a_broken_link_fails_the_strict_build(docs_site, tmp_path):
    page = build_docs.STAGE / "docs" / "colab.md"
    original = page.read_text(encoding="utf-8")
    try:
        page.write_text(original + "\n[gone](no-such-page.md)\n", encoding="utf-8")
        assert build_docs.run_mkdocs(tmp_path / "site") != 0
    finally:
        page.write_text(original, encoding="utf-8")

