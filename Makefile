# `make demo`: set up .venv and train on the embedded MNIST sample. `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test lint bench figs pretrained clean

setup: $(STAMP)

# Reinstalled only when the dependency lists change; constraints.txt pins the CPU torch/torchvision pair.
$(STAMP): pyproject.toml constraints.txt requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
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

figs: $(STAMP)
	$(BIN)/python tools/make_figs.py

# The generator shipped for notebook 05 and the sliders: the course net needs ~6,000 updates to draw digits.
pretrained: $(STAMP)
	$(BIN)/python -m dcganlib train --preset mnist28 --dataset mnist-5k --epochs 100 --batch-size 64 \
		--run-dir runs/pretrained-mnist28
	$(BIN)/python -m dcganlib export --run-dir runs/pretrained-mnist28 --out dcganlib/assets/mnist28_generator.pt

clean:
	rm -rf $(VENV) runs .pytest_cache
