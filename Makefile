# gpuconv: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo goldens bench clean

# The venv is (re)installed when pyproject.toml changes; otherwise setup is a no-op.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/gpuconv demo

# Regenerate the golden files from PyTorch (the tests read them without torch).
goldens: setup
	$(PY) -m oracle generate

# NumPy backend vs PyTorch CPU on the layer suite in bench/layers.py.
bench: setup
	$(PY) bench/cpu.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
