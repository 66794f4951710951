# gpuconv: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# one venv, two installs: training needs gpuconv[train] (and gpuconv[cuda] where an NVIDIA
# driver is), the tests the whole test stack (torch, CUDA toolchain wheels)
TRAIN_STAMP := $(VENV)/.installed-train
TEST_STAMP  := $(VENV)/.installed-test
TRAIN_EXTRAS := train$(shell command -v nvidia-smi >/dev/null 2>&1 && echo ,cuda)

FASHION_MNIST := /usr/share/datasets/fashion-mnist
# each run writes a new runs/<UTC time> and links runs/latest to it
TRAIN_ARGS    ?= --device auto

.PHONY: setup setup-train data train test check-memory check-races check-mutants demo goldens \
	bench gpu-carry clean

# Each install reruns when pyproject.toml changes; otherwise it is a no-op.
$(TRAIN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[$(TRAIN_EXTRAS)]'
	touch $@

$(TEST_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

setup-train: $(TRAIN_STAMP)
setup: $(TEST_STAMP)

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
train: setup-train data
	$(VENV)/bin/gpuconv train $(TRAIN_ARGS)

test: setup
	$(PY) -m pytest -q

# The CUDA C kernels' host emulation under AddressSanitizer and UBSan's alignment check: a
# kernel's read or write past a buffer, or a misaligned vector access (a fault on a GPU),
# fails the run, naming the kernel (the emulation alone checks neither)
check-memory: setup
	GPUCONV_HOST_ASAN=1 ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(g++ -print-file-name=libasan.so) \
	    $(PY) -m pytest -q -p no:randomly --capture=sys -k cupy tests/test_cupy_host.py \
	    tests/test_cupy_layers_host.py tests/test_huge_hyperparameters.py tests/test_golden.py

# The same tests under ThreadSanitizer: a shared-memory access that no __syncthreads orders
# against another thread's (a race on a GPU, which the emulation passes by chance) fails the
# run, naming the kernel and line, whatever the timing
check-races: setup
	GPUCONV_HOST_TSAN=1 TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" \
	    LD_PRELOAD=$$(g++ -print-file-name=libtsan.so) \
	    $(PY) -m pytest -q -p no:randomly --capture=sys -k cupy tests/test_cupy_host.py \
	    tests/test_cupy_layers_host.py tests/test_huge_hyperparameters.py tests/test_golden.py

# Each bug of the mutant catalogue (tests/mutants.py) planted in a scratch copy of the tree, one
# at a time, once its tests pass unmutated: one of them must fail (ONLY=name,... for some)
check-mutants: setup
	$(PY) scripts/check_mutants.py $(if $(ONLY),--only $(ONLY))

demo: setup-train
	$(VENV)/bin/gpuconv demo

# Regenerate the golden files from PyTorch (the tests read them without torch).
goldens: setup
	$(PY) -m oracle generate

# NumPy backend vs PyTorch CPU on the CPU layer suite (gpuconv/benchmark/suite.py).
bench: setup
	$(PY) bench/cpu.py

# What bench/gpu_acceptance.sh needs carried to a lent GPU (its header gives the call), in the
# git-ignored .whl/: a numpy<2.5 wheel for the GPU image's Python 3.12 (numba-cuda cannot
# compile under its NumPy 2.5, NVIDIA/numba-cuda#907) and Fashion-MNIST's IDX files.
GPU_CARRY := .whl
gpu-carry: data
	mkdir -p $(GPU_CARRY)/wheels $(GPU_CARRY)/fashion-mnist
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --implementation cp \
	    --python-version 3.12 --platform manylinux_2_28_x86_64 -d $(GPU_CARRY)/wheels 'numpy<2.5'
	cp $(FASHION_MNIST)/*-ubyte.gz $(GPU_CARRY)/fashion-mnist/
	du -sh $(GPU_CARRY)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
