# The two fresh-machine commands are `make up` (main job) and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv chromium up demo test bench clean

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Main job: the whole system on 127.0.0.1 (API + workflow + endpoint; data kept in .devstack/).
up: venv
	$(BIN)/discscope up --port $${PORT:-8000}

demo: venv
	$(BIN)/discscope demo

# Browser tests drive Debian's Chromium (playwright's own browser download does not work here).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: venv chromium
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .pytest_cache
