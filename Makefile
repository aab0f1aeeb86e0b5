# `make run`: set up and train the default configuration. `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup run test
setup: $(VENV)/installed $(FASHION_MNIST)

# torch and torchvision are resolved together so that pip picks a matching pair.
$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

# Debian ships Fashion-MNIST; elsewhere run.py downloads it through torchvision on first use.
$(FASHION_MNIST):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "dataset-fashion-mnist not installed (needs root and apt-get); run.py will download Fashion-MNIST"; \
	fi

run: setup
	$(PY) run.py

test: setup
	$(PY) -m pytest
