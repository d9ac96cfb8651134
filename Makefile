# The whole set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
CIFAR10_DIR := $(CACHE)/cifar10
SHARED := ../shared
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test test-fast install browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/smoothbench demo

$(CIFAR10_DIR)/cifar-10-batches-py/test_batch: $(BIN)/python
	$(BIN)/python $(SHARED)/data/cifar10/materialize.py $(CIFAR10_DIR)

TEST_ENV := SMOOTHBENCH_CIFAR10_DIR=$(abspath $(CIFAR10_DIR)) SMOOTHBENCH_FROST_DIR=$(abspath $(SHARED)/data/frost) SMOOTHBENCH_CHROMIUM=$(CHROMIUM)

# The headless browser of the report tests (Debian's chromium, driven by Playwright): installed when missing.
# Where it cannot be (no root, no network) the browser tests are skipped with the reason and a warning.
browser:
	@test -x $(CHROMIUM) || { DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "WARNING: could not install chromium ($(CHROMIUM)); the browser tests will be skipped"

# Everything, as CI runs it.
test: install browser $(CIFAR10_DIR)/cifar-10-batches-py/test_batch
	$(TEST_ENV) $(BIN)/python -m pytest -q -rs

# The inner loop: no subprocess, torchrun, training or long sweep tests (the `slow` marker).
test-fast: install $(CIFAR10_DIR)/cifar-10-batches-py/test_batch
	$(TEST_ENV) $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(CACHE)
