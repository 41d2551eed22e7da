# `make demo`: set up .venv and train on the embedded MNIST sample. `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test lint bench gpu-check figs pretrained clean

setup: $(STAMP)

# Reinstalled only when the dependency lists change; constraints.txt pins the CPU torch/torchvision pair.
# Beside the venv's ipywidgets 8, Colab's 7.7.1 for tests/test_sliders.py's kernel test: only what the kernel
# side imports (the front-end bundles widgetsnbextension 3.6 and jupyterlab_widgets 1.x are never loaded).
$(STAMP): pyproject.toml constraints.txt requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	rm -rf $(VENV)/ipywidgets-7.7.1
	$(BIN)/python -m pip install -q --target $(VENV)/ipywidgets-7.7.1 --no-deps ipywidgets==7.7.1 ipython_genutils==0.2.0
	touch $(STAMP)

# mnist32, not the course net: it draws digits after ~600 updates (~1.5 min here) instead of ~6,000.
demo: $(STAMP)
	$(BIN)/python -m dcganlib train --preset mnist32 --dataset mnist-5k --epochs 15 --run-dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check dcganlib tests benchmarks tools notebooks
	$(BIN)/python tools/set_repo_url.py --check

# The browser test needs Debian's Chromium (installed once, as root, as CI runs).
test: $(STAMP) lint
	bash tools/install_browser.sh $(BIN)/python
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/quality.py

# On a machine with a GPU: precision, exact kill-and-resume, CUDA graphs and speed; see benchmarks/README.md.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

figs: $(STAMP)
	$(BIN)/python tools/make_figs.py

# The generator shipped for notebook 05 and the sliders: the course net needs ~6,000 updates to draw digits.
pretrained: $(STAMP)
	$(BIN)/python -m dcganlib train --preset mnist28 --dataset mnist-5k --epochs 100 --batch-size 64 \
		--run-dir runs/pretrained-mnist28
	$(BIN)/python -m dcganlib export --run-dir runs/pretrained-mnist28 --out dcganlib/assets/mnist28_generator.pt

clean:
	rm -rf $(VENV) runs .pytest_cache
