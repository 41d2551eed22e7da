# `make demo`: set up .venv and train on the embedded MNIST sample. `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test test-fast test-floors lint docs docs-publish bench gpu-check figs pretrained pretrained-conditional failure-runs mutate clean

setup: $(STAMP)

# The Colab journey's runtime (tests/colab_sim.py): Colab's Python where this machine has one (3.13), with Colab's
# package versions (tests/colab_versions.txt); a CUDA build of torch from PyPI running on the CPU: 5.5 GB installed,
# 7.5 GB at the peak of its installation.
COLAB_ENV := $(VENV)/colab
$(COLAB_ENV)/.installed: tests/colab_versions.txt tools/colab_env.sh
	MIN_FREE_GB=8 bash tools/colab_env.sh $(COLAB_ENV) 3.13 $(PYTHON) -r tests/colab_versions.txt
	touch $@

# The oldest Colab runtime version supported, 2026.04 (tests/colab_oldest_versions.txt): its Python, 3.12, and its
# versions of dcganlib's dependencies, which are dcganlib's floors; the fast tier runs there too. Another CUDA build
# of torch from PyPI: 8 GB installed, 12.4 GB at the peak of its installation.
FLOORS_ENV := $(VENV)/floors
$(FLOORS_ENV)/.installed: tests/colab_oldest_versions.txt pyproject.toml tools/colab_env.sh
	MIN_FREE_GB=13 bash tools/colab_env.sh $(FLOORS_ENV) 3.12 $(PYTHON) -c tests/colab_oldest_versions.txt -e ".[test]"
	touch $@

# Reinstalled only when the dependency lists change; constraints.txt pins the CPU torch/torchvision pair.
# Beside the venv's ipywidgets 8, Colab's 7.7.1 for tests/test_sliders.py's kernel test: only what the kernel
# side imports (the front-end bundles widgetsnbextension 3.6 and jupyterlab_widgets 1.x are never loaded).
$(STAMP): pyproject.toml constraints.txt requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,docs]"
	rm -rf $(VENV)/ipywidgets-7.7.1
	$(BIN)/python -m pip install -q --target $(VENV)/ipywidgets-7.7.1 --no-deps ipywidgets==7.7.1 ipython_genutils==0.2.0
	touch $(STAMP)

# The course net at batch 32 and lr 5e-4 for 55 epochs (preset demo): all ten digits within ~10 epochs on most seeds,
# not after 50-90 grey-blob epochs (docs/results.md).
demo: $(STAMP)
	$(BIN)/python -m dcganlib train --preset demo --dataset mnist-5k --run-dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check dcganlib tests benchmarks tools notebooks
	$(BIN)/python tools/set_repo_url.py --check

# The browser test needs Debian's Chromium (installed once, as root, as CI runs). The largest environment is built
# first, while the disk is emptiest: on a clean clone `make test` peaks at 21 GB of disk (docs/development.md).
test: $(FLOORS_ENV)/.installed $(COLAB_ENV)/.installed $(STAMP) lint
	bash tools/install_browser.sh $(BIN)/python
	$(BIN)/python -m pytest
	$(FLOORS_ENV)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider

# The fast tier for a developer's loop: everything but the browser, the notebooks, the Colab journey, torchrun, the
# killed-process tests and the benchmarks (pytest -m "not slow").
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -m "not slow" -q

# The fast tier on the oldest Colab runtime version supported (`make test` runs it too).
test-floors: $(FLOORS_ENV)/.installed
	$(FLOORS_ENV)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider

# The docs site (tools/build_docs.py): README, docs/, the API reference and the notebooks executed with their
# outputs, built strictly into site/. `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

# Build the site and push it to the gh-pages branch, which GitHub Pages serves (needs push access).
docs-publish: $(STAMP)
	$(BIN)/python tools/build_docs.py --publish

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

# The conditional generator shipped with the package (pretrained.SHIPPED_CONDITIONAL_GENERATOR, the browser test's):
# `demo --conditional`, 55 epochs.
pretrained-conditional: $(STAMP)
	$(BIN)/python -m dcganlib train --preset demo --conditional --dataset mnist-5k --run-dir runs/pretrained-conditional
	$(BIN)/python -m dcganlib export --run-dir runs/pretrained-conditional \
		--out dcganlib/assets/mnist28_conditional_generator.pt

# The five runs of notebook 4's failure-mode lab (dcganlib/assets/run-*.npz): 30 epochs each, ~20 min on two cores.
failure-runs: $(STAMP)
	$(BIN)/python tools/record_failure_runs.py

# Mutation testing of the core modules (config: pyproject.toml [tool.mutmut]); prints killed/total per module,
# less the equivalent mutants in tests/equivalent_mutants.md. CPU-heavy (two cores: ~1 h for all five modules);
# MUTANTS='dcganlib.losses*' limits a run to one module. Results are kept in mutants/ and a re-run tests only new
# mutants, but editing [tool.mutmut]'s test selection or pytest arguments discards every kept result.
MUTMUT_VERSION := 3.8.1
MUTANTS ?=
mutate: $(STAMP)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q mutmut==$(MUTMUT_VERSION)
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/python tools/mutation_score.py --list

clean:
	rm -rf $(VENV) runs .pytest_cache mutants build site
