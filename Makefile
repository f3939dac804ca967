# The two fresh-machine commands are `make up` (main job) and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The sagemaker SDK lives in its own venv: it only generates the pipeline definition.
PIPELINE_VENV := .venv-pipeline
PIPELINE_STAMP := $(PIPELINE_VENV)/.installed

.PHONY: venv pipeline-venv pipeline-definition chromium up demo test bench clean

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/test.txt requirements/cdk.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

pipeline-venv: $(PIPELINE_STAMP)

$(PIPELINE_STAMP): requirements/pipeline.txt
	test -x $(PIPELINE_VENV)/bin/python || $(PYTHON) -m venv $(PIPELINE_VENV)
	$(PIPELINE_VENV)/bin/pip install -q -r requirements/pipeline.txt
	touch $@

# Regenerate the committed SageMaker Pipeline definition after changing sagemaker/pipeline.py.
pipeline-definition: pipeline-venv
	$(PIPELINE_VENV)/bin/python sagemaker/pipeline.py --out sagemaker/pipeline_definition.json

# Main job: the whole system on 127.0.0.1 (API + workflow + endpoint; data kept in .devstack/).
up: venv
	$(BIN)/discscope up --port $${PORT:-8000}

demo: venv
	$(BIN)/discscope demo

# Browser tests drive Debian's Chromium (playwright's own browser download does not work here).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: venv pipeline-venv chromium
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) $(PIPELINE_VENV) .pytest_cache
