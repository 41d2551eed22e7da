# `make demo`: set up .venv and train on the embedded MNIST sample. `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test lint bench figs clean

setup: $(STAMP)

# Reinstalled only when the dependency lists change; constraints.txt pins the CPU torch/torchvision pair.
$(STAMP): pyproject.toml constraints.txt requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m dcganlib train --preset mnist28 --dataset mnist-5k --epochs 10 --batch-size 32 \
		--run-dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check dcganlib tests benchmarks tools notebooks
	$(BIN)/python tools/set_repo_url.py --check

# The browser test needs Debian's Chromium (installed once, as root, as CI runs).
test: $(STAMP) lint
	bash tools/install_browser.sh $(BIN)/python
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
