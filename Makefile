# Two entry points for a newcomer (see README.md):
#   make lab    set up .venv and start JupyterLab on the tour notebook
#   make test   set up .venv and run the whole test suite (unit, reference, notebooks)
# TORCH: how pip should get torch when .venv has none (default: PyPI's build for this machine).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch
BIN    := $(VENV)/bin

.PHONY: lab test bench setup setup-lab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev,lab]"

# Jupyter refuses to run as root unless told; containers often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_tour.ipynb

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests notebooks --nbmake -p no:cacheprovider

bench: setup
	$(BIN)/python bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info
