# gpuconv: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FASHION_MNIST := /usr/share/datasets/fashion-mnist
# each run writes a new runs/<UTC time> and links runs/latest to it
TRAIN_ARGS    ?= --device auto

.PHONY: setup data train test demo goldens bench clean

# The venv is (re)installed when pyproject.toml changes; otherwise setup is a no-op.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

setup: $(STAMP)

# Fashion-MNIST from Debian's package when this machine allows installing it; otherwise
# `gpuconv train` falls back to the small subset bundled with gpuconv (and says so).
data:
	@if [ -d $(FASHION_MNIST) ]; then \
		echo "Fashion-MNIST: $(FASHION_MNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y dataset-fashion-mnist || \
		{ apt-get update && apt-get install -y dataset-fashion-mnist; } || \
		echo "note: could not install dataset-fashion-mnist; training uses the bundled subset"; \
	else \
		echo "note: install Debian's dataset-fashion-mnist (as root) for the full dataset;" \
		     "training uses the bundled subset"; \
	fi

# The main job: train the default CNN (gpuconv train --help for the options).
train: setup data
	$(VENV)/bin/gpuconv train $(TRAIN_ARGS)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/gpuconv demo

# Regenerate the golden files from PyTorch (the tests read them without torch).
goldens: setup
	$(PY) -m oracle generate

# NumPy backend vs PyTorch CPU on the CPU layer suite (gpuconv/benchmark/suite.py).
bench: setup
	$(PY) bench/cpu.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
