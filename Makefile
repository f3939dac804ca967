# The two fresh-machine commands are `make up` (main job) and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The sagemaker SDK lives in its own venv: it only generates the pipeline definition.
PIPELINE_VENV := .venv-pipeline
PIPELINE_STAMP := $(PIPELINE_VENV)/.installed

# ESLint and the page's unit tests (Node's test runner): exact versions from package-lock.json.
NODE_STAMP := node_modules/.installed

.PHONY: venv pipeline-venv pipeline-definition chromium node-deps web-check up demo test bench clean

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

node-deps: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); if (a < 20 || (a === 20 && b < 19)) { console.error("Node.js 20.19 or newer is needed, found " + process.version); process.exit(1); }'
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The page's code: ESLint, then the unit tests of its pure parts (the browser tests are in pytest).
web-check: node-deps
	npm run --silent lint
	npm test --silent

test: venv pipeline-venv chromium web-check
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) $(PIPELINE_VENV) .pytest_cache node_modules
