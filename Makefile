# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install, run the demo
#   make test   create .venv, install the test extras (torch CPU, transformers, dask, numba-cuda,
#               pytorch-dlrs, JAX CPU and optax), run pytest
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# quiet installs: no pip version nag, no progress bars; errors still print
PIP := $(BIN)/python -m pip --disable-pip-version-check --no-input
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test venv clean lint results-page studies

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(PIP) install -q -e .
	touch $@

# torch is pinned and installed first: the pinned CPU build lies on disk, and installing it
# before transformers (and pytorch-dlrs, which asks for torch>=2.0) keeps pip from pulling a
# multi-GB CUDA build as a dependency.
$(TEST_STAMP): $(STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,torch,hf,dask,cuda,crosscheck,optax]"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/refimpl demo

# HYPOTHESIS_PROFILE=ci (tests/conftest.py): the property tests draw the same examples on
# every run and machine; HYPOTHESIS_PROFILE=dev make test explores new ones.
test: $(TEST_STAMP)
	NUMBA_ENABLE_CUDASIM=$${NUMBA_ENABLE_CUDASIM-1} HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE-ci} \
		$(BIN)/python -m pytest -q

# The tables of docs/results.md from the runs recorded in results/ (trains nothing); the
# figures land in docs/figures. tests/experiments/test_results_page.py checks the page.
STUDIES := pinn-helmholtz greedy-robustness greedy-factor-sweep tlr-robustness dlrs-batch lrpo
results-page: $(STAMP)
	for study in $(STUDIES); do \
		$(BIN)/refimpl reproduce $$study --report --out out/report --page docs/results.md \
			> /dev/null || exit 1; done
	cp out/report/results_*.png docs/figures/

# Every study at full size, one after the other, niced, one thread: each finished run is
# appended to results/NAME.jsonl and skipped when this runs again, so it can be stopped
# (Ctrl-C) and started again at any time; commit results/ as runs land, then make results-page.
STUDY_ORDER := dlrs-batch greedy-robustness lrpo tlr-robustness greedy-factor-sweep pinn-helmholtz
studies: $(STAMP)
	for study in $(STUDY_ORDER); do \
		NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \
			$(BIN)/refimpl reproduce $$study --out out/reproduce || exit 1; done

# On a machine with an NVIDIA GPU, numba-cuda and torch CUDA (nothing is installed, no network):
# the CUDA tests with the simulator off, then training steps against torch CUDA, written as
# Markdown to $(GPU_CHECK_OUT) (docs/cuda.md). GPU_CHECK_ARGS=--tiny runs it on the simulator.
GPU_CHECK_OUT ?= out/gpu-check.md
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
.PHONY: gpu-check
gpu-check:
	PYTHONPATH=. $(GPU_PY) scripts/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

lint:
	$(BIN)/ruff check refimpl tests

clean:
	rm -rf $(VENV) build *.egg-info
