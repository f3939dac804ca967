# The two fresh-machine commands are `make up` (main job) and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv up test bench clean

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Main job: the endpoint server with the shipped baseline model on 127.0.0.1:8080.
up: venv
	$(BIN)/discscope serve --host 127.0.0.1 --port $${PORT:-8080}

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .pytest_cache
