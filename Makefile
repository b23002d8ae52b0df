# Two entry points (see README): `make demo` and `make test`. Both set everything up first and
# are fast the second time (stamp files).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUNDLE := cnnvis_widget/static/explorer.js
JS_SOURCES := $(shell find js -name '*.ts' -o -name '*.css' -o -name '*.mjs' 2>/dev/null)
PORT ?= 8888

.PHONY: demo test setup lint test-python test-js test-ui chromium data bench clean protocol

setup: $(STAMP) $(BUNDLE) $(VENV)/package.json

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch and torchvision come together from the registry (the CUDA build; it also runs on CPU).
$(STAMP): pyproject.toml $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

$(BUNDLE): node_modules/.package-lock.json $(JS_SOURCES)
	npm run build

# Debian's Chromium for the real-browser tests (never `playwright install`).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Debian's real image data that cv.datasets reads (docs/data.md): Fashion-MNIST, photo cut-outs,
# photos, GIMP's texture patterns (docs/concepts.md). Installed as root (sudo otherwise) when a
# package is missing: about 355 MB to download (700 MB on disk), once.
DATA_PACKAGES := dataset-fashion-mnist tuxpaint-stamps-default opencv-doc mate-backgrounds gimp-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
data:
	@[ "$$(dpkg -s $(DATA_PACKAGES) 2>/dev/null | grep -c '^Status: install ok installed')" = $(words $(DATA_PACKAGES)) ] || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(DATA_PACKAGES) >/dev/null; }

# The venv lies inside this repository, whose package.json declares "type": "module"; without a
# package.json of its own, Node would load the CommonJS tools installed in the venv as ES
# modules. JupyterLab runs its bundled yarn.js (`yarn config`) when it starts: that failed with
# a long minified "Dynamic require" error before the demo's URL.
$(VENV)/package.json: $(VENV)/bin/python
	echo '{"type": "commonjs"}' > $@

# Quiet start-up: the URL, then only warnings and errors (the port is not silently changed, so
# the URL printed is the one served; a port in use is an error).
demo: setup
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(16))'); \
	echo; echo "  cnnvis-widget demo: open http://127.0.0.1:$(PORT)/lab/tree/notebooks/tour.ipynb?token=$$token"; \
	echo "  (Control-C to stop)"; echo; \
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(PORT) --ServerApp.port_retries=0 --no-browser \
	  --allow-root --IdentityProvider.token=$$token --ServerApp.log_level=WARN --LabApp.log_level=WARN \
	  --ServerApp.root_dir=$(CURDIR) notebooks/tour.ipynb

lint: setup
	$(BIN)/ruff check cnnvis_widget cnnvis_widget_server tests benchmarks notebooks
	$(BIN)/ruff format --check cnnvis_widget cnnvis_widget_server tests benchmarks notebooks
	$(BIN)/mypy
	npm run typecheck
	npm run lint

# js/protocol.ts is generated from cnnvis_widget/protocol.py (tests/test_protocol.py checks it).
protocol: setup
	$(PY) -m cnnvis_widget.protocol_ts > js/protocol.ts

test-js: setup
	npm test

test-python: setup data
	$(BIN)/pytest -q -m "not ui" tests

test-ui: setup chromium
	$(BIN)/pytest -q -m ui tests

test: lint test-js test-python test-ui

bench: setup
	$(PY) benchmarks/gradcam_speed.py

clean:
	rm -rf $(VENV) node_modules cnnvis_widget/static
