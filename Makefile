# One-command entry points. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: train a small ConvRNN on the embedded synthetic objects, then score it on synthetic V4/IT data.
demo: $(STAMP)
	$(PY) -m convrnn.demo

## Every test that can run on this machine (slow ones included; gpu ones skip without CUDA), then ruff.
test: $(STAMP)
	WANDB_MODE=disabled $(PY) -m pytest -q
	$(VENV)/bin/ruff check .

## Every benchmark at its documented size (CPU; tens of minutes on 2 cores). Figures go in docs/benchmarks.md.
bench: $(STAMP)
	$(PY) benchmarks/unroll.py --channels-last
	$(PY) benchmarks/data.py --n 500 --repeats 5
	$(PY) benchmarks/train_step.py --steps 60
	$(PY) benchmarks/neural_fit.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/search.py all

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
