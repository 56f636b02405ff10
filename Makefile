# One-command entry points. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BS_VENV := .venv-brainscore
BS_PY := $(BS_VENV)/bin/python
BS_STAMP := $(BS_VENV)/.installed

.PHONY: install demo test lint bench clean brainscore-env test-brainscore

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: train a small ConvRNN on the embedded synthetic objects, then score it on synthetic V4/IT data.
demo: $(STAMP)
	$(PY) -m convrnn.demo

## Every test that can run on this machine (slow ones included; gpu ones skip without CUDA), the Brain-Score tests
## in their own environment, then ruff.
test: $(STAMP) $(BS_STAMP)
	WANDB_MODE=disabled $(PY) -m pytest -q
	$(MAKE) test-brainscore
	$(VENV)/bin/ruff check .

## Every benchmark at its documented size (CPU; tens of minutes on 2 cores). Figures go in docs/benchmarks.md.
bench: $(STAMP)
	$(PY) benchmarks/unroll.py --channels-last
	$(PY) benchmarks/data.py --n 500 --repeats 5
	$(PY) benchmarks/train_step.py --steps 60
	$(PY) benchmarks/neural_fit.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/search.py all

## Brain-Score vision in its own environment (.venv-brainscore): it pins numpy<2 and xarray<2022.6, which the main
## environment cannot have. Our package is installed without its dependencies (the few it imports are listed).
$(BS_STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(BS_VENV)
	$(BS_PY) -m pip install -q --upgrade pip
	$(BS_PY) -m pip install -q -c constraints.txt "brainscore-vision==2.4.2" "xarray<2022.6" h5netcdf matplotlib \
		rich pyyaml "pytest>=8" pytest-timeout
	$(BS_PY) -m pip install -q --no-deps -e .
	touch $(BS_STAMP)

brainscore-env: $(BS_STAMP)

## The Brain-Score tests (tests/brainscore) in .venv-brainscore; they use the main .venv for fit_neural.py's scores.
test-brainscore: $(STAMP) $(BS_STAMP)
	WANDB_MODE=disabled BS_INSTALL_DEPENDENCIES=no $(BS_PY) -m pytest -q -p no:cacheprovider tests/brainscore

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(BS_VENV) .pytest_cache build *.egg-info
