"""Build the docs site: the README, docs/, figs/, an API reference and the notebooks executed with their outputs.

Usage: python tools/build_docs.py [--site DIR] [--jobs N] [--publish]
It assembles build/docs/ (the README as the home page, docs/, figs/, api.md and the notebooks executed on the
embedded digits, or notebook 07 on cartoon faces, with SITE_PARAMETERS) and runs `mkdocs build --strict` on it, or
`mkdocs gh-deploy` with --publish.
An executed notebook is kept in build/executed/ under a key of its text, its parameters and the library's
sources, so a rebuild executes only what changed. The site has no kernel: a widget output becomes its image (the
sliders' current picture) or its text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill

from dcganlib.playground import write_shipped_models

if __package__:  # imported as tools.build_docs (the tests)
    from .photos import write_faces
else:  # run as a script: tools/ is on sys.path
    from photos import write_faces

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
STAGE = BUILD / "docs"
EXECUTED = BUILD / "executed"
CONFIG = ROOT / "mkdocs.yml"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Settings that train real digits on two CPU cores in a few minutes; runs go to a temporary folder (RUNS_BASE).
SITE_PARAMETERS = {
    "04_training.ipynb": {"EPOCHS": 12, "PLAIN_STEPS": 500, "COMPARE_EPOCHS": 12, "LOCAL_RUN": True,
                          "RUN_NAME": "site"},
    "06_conditional_gan.ipynb": {"EPOCHS": 35, "PLAIN_STEPS": 150, "LOCAL_RUN": True, "RUN_NAME": "site"},
    "07_faces_64px.ipynb": {"EPOCHS": 8, "BATCH_SIZE": 64, "LOCAL_RUN": True, "RUN_NAME": "site",
                            "CONFIG_OVERRIDES": {"g_features": 16, "d_features": 16}},
}
# The faces notebook's data on the site: cartoon faces that tools/photos.py draws (no download while building).
SITE_FACES = {"07_faces_64px.ipynb": 1000}
# What a reader of the site should know about how a page was executed, shown above its first cell.
SITE_NOTES = {
    "04_training.ipynb": "*On this site the notebook ran on a CPU with `EPOCHS = 12` and `PLAIN_STEPS = 500` (on Colab "
                         "55 and 1,500): its samples, curves and animation stop at epoch 12, where the `demo` digits "
                         "are rough yet; a Colab run goes on to 55. The comparison of settings runs its full 12 "
                         "epochs.*",
    "06_conditional_gan.ipynb": "*On this site the notebook ran on a CPU with `EPOCHS = 35` and `PLAIN_STEPS = 150` "
                                "(on Colab 55 and 300): its pictures are of epoch 35, the last the text describes; a "
                                "Colab run goes on to 55.*",
    "07_faces_64px.ipynb": f"*On this site the notebook ran on a CPU, on {SITE_FACES['07_faces_64px.ipynb']:,} "
                           "cartoon faces drawn by `tools/photos.py` (the site is built without downloads), with both "
                           "networks at a quarter of their width: the pictures show the pipeline, not what CelebA "
                           "gives. On Colab it trains the full networks on CelebA or your photos.*",
}
# The library's API reference, one section per module, in the order a reader meets them; the CLI has its page in
# docs/training.md.
API_MODULES = ("config", "models", "losses", "step", "train", "data", "catalog", "sources", "prepared", "celeba",
               "checkpoint", "runs", "storage", "latent", "directions", "sliders", "viz", "images", "diagrams",
               "metrics", "scores", "diagnostics", "pretrained", "onnx_export", "devices", "colab", "distributed",
               "augment", "build", "evaluation", "ema", "history", "seeds", "timing", "hub", "playground")
NOT_IN_API = ("__init__", "__main__", "_version", "cli")


def source_key(notebook: Path, parameters: dict) -> str:
    """A short hash of what an execution depends on: the notebook, its parameters and the library's sources."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    for path in sorted((ROOT / "dcganlib").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def execute(notebook: Path) -> Path:
    """The notebook executed with its site parameters (from the cache when nothing it depends on changed)."""
    parameters = SITE_PARAMETERS.get(notebook.name, {})
    executed = EXECUTED / f"{notebook.stem}-{source_key(notebook, parameters)}.ipynb"
    if executed.is_file():
        return executed
    EXECUTED.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as runs:
        extra = {"RUNS_BASE": runs} if "RUNS_BASE" in notebook.read_text(encoding="utf-8") else {}
        if notebook.name in SITE_FACES:
            faces = write_faces(Path(runs) / "faces", SITE_FACES[notebook.name])
            extra |= {"DATASET": f"folder:{faces}", "DATA_ROOT": str(Path(runs) / "data")}
        partial = executed.with_suffix(".partial.ipynb")
        papermill.execute_notebook(notebook, partial, parameters={**parameters, **extra}, cwd=str(NOTEBOOKS),
                                   kernel_name="python3", progress_bar=False, execution_timeout=1200)
    partial.rename(executed)
    for stale in EXECUTED.glob(f"{notebook.stem}-*.ipynb"):
        if stale != executed:
            stale.unlink()
    return executed


def widget_image(model_id: str, state: dict) -> str | None:
    """The base64 PNG of the first Image widget inside a widget's tree, if it has one."""
    model = state.get(model_id)
    if model is None:
        return None
    if model.get("model_name") == "ImageModel":
        for buffer in model.get("buffers", []):
            if buffer.get("path") == ["value"]:
                return buffer["data"]
    children = model.get("state", {}).get("children", [])
    for child in children:
        found = widget_image(child.removeprefix("IPY_MODEL_"), state)
        if found:
            return found
    return None


def static_outputs(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The outputs as a page without a kernel can show them: every widget as its image or its text (the widget
    state dropped), and every GIF as an HTML image, which nbconvert would otherwise show as text."""
    state = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/gif" in data:
                data["text/html"] = f'<img src="data:image/gif;base64,{data.pop("image/gif").strip()}" alt="animation">'
            view = data.pop(WIDGET_VIEW, None)
            image = widget_image(view["model_id"], state) if view else None
            if image:
                output.data = {"image/png": image, "text/plain": "the explorer's first image (live in a kernel)"}
    return notebook


def stage_notebook(executed: Path, target: Path) -> None:
    notebook = static_outputs(nbformat.read(executed, as_version=4))
    if target.name in SITE_NOTES:
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(SITE_NOTES[target.name]))
    nbformat.write(notebook, target)


def api_page() -> str:
    sections = [f"## dcganlib.{module}\n\n::: dcganlib.{module}\n" for module in API_MODULES]
    return "# API reference\n\nThe library's modules, from their docstrings.\n\n" + "\n".join(sections)


def stage(jobs: int) -> Path:
    """Assemble build/docs/: README.md, docs/, figs/, api.md and the executed notebooks."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    (STAGE / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", STAGE / "README.md")
    shutil.copytree(ROOT / "docs", STAGE / "docs")
    write_shipped_models(STAGE / "docs" / "assets" / "playground")  # the playground page's generators
    shutil.copytree(ROOT / "figs", STAGE / "figs")
    (STAGE / "api.md").write_text(api_page(), encoding="utf-8")
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"), key=lambda path: path.name not in SITE_PARAMETERS)
    with kernel_threads(max(1, (os.cpu_count() or 1) // jobs)), ThreadPoolExecutor(jobs) as pool:
        for notebook, executed in zip(notebooks, pool.map(execute, notebooks), strict=True):
            stage_notebook(executed, STAGE / "notebooks" / notebook.name)
            print(f"executed {notebook.name}", flush=True)
    return STAGE


@contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """The kernels started inside share the cores, `threads` each: they inherit OMP_NUM_THREADS from this process's
    environment, which is restored afterwards, so that later child processes (a test's) keep the caller's setting."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


def run_mkdocs(site: Path, publish: bool = False) -> int:
    """`mkdocs build --strict` of the staged pages into `site` (or `gh-deploy` with publish); its exit code."""
    command = [sys.executable, "-m", "mkdocs", "gh-deploy" if publish else "build", "--strict", "--config-file",
               str(CONFIG)]
    command += ["--force"] if publish else ["--site-dir", str(site.resolve())]
    # NO_MKDOCS_2_WARNING silences Material's banner about MkDocs' future, which says nothing about this site.
    return subprocess.run(command, cwd=ROOT, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}).returncode


def build(site: Path, jobs: int = 2, publish: bool = False) -> int:
    """Stage every page and build the site; mkdocs' exit code (non-zero on any warning)."""
    stage(jobs)
    return run_mkdocs(site, publish)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "site", help="where the site goes (default: site/)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default 2)")
    parser.add_argument("--publish", action="store_true", help="push the site to the gh-pages branch")
    args = parser.parse_args(argv)
    return build(args.site, args.jobs, args.publish)


if __name__ == "__main__":
    sys.exit(main())
