# gatewayasgi developer commands. Every target sets up what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run node test lint typecheck unit redis-server soak bench bench-quick bench-ladder bench-recovery clean test-js chat-client chromium docs docs-serve

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,benchmarks,docs]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install gatewayasgi with dev and benchmark extras

# Serving the example needs the package, FastAPI and a server: nothing of dev or benchmarks.
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . 'hypercorn>=0.17' 'fastapi>=0.110'
	touch $(RUN_STAMP)

# The example chat page loads the TypeScript client from clients/js/dist (not tracked):
# built when missing or older than its sources.
CHAT_CLIENT := clients/js/dist/index.js
$(CHAT_CLIENT): clients/js/package-lock.json clients/js/tsconfig.json $(wildcard clients/js/src/*.ts) | node
	cd clients/js && npm ci --no-audit --no-fund && npm run build

chat-client: $(CHAT_CLIENT) ## Build the TypeScript client (clients/js/dist) the example chat page loads

# The AI example's first page is the ai package's chat, bundled by esbuild into
# examples/ai/dist/chat.js (not tracked): built when missing or older than its sources.
.PHONY: ai-example run-ai
AI_EXAMPLE := examples/ai/dist/chat.js
$(AI_EXAMPLE): examples/ai/package-lock.json examples/ai/src/chat.js | node
	cd examples/ai && npm ci --no-audit --no-fund && npm run build

ai-example: $(AI_EXAMPLE) ## Build the AI example's page bundle (examples/ai/dist/chat.js: the ai package, esbuild)

run-ai: $(RUN_STAMP) $(CHAT_CLIENT) $(AI_EXAMPLE) ## Serve the AI example (a fake model, the AI SDK and TS client pages) on $(HOST):$(PORT)
	$(VENV)/bin/hypercorn examples.ai.app:app --bind $(HOST):$(PORT)

chromium: ## Install Chromium (Debian/apt) when it is missing; the example chat's browser test drives it
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: install it (apt-get install chromium) to run the browser test"; fi; }

run: $(RUN_STAMP) $(CHAT_CLIENT) ## Serve the example chat app (FastAPI + gateway + the TS client) under hypercorn on $(HOST):$(PORT)
	$(VENV)/bin/hypercorn examples.chat.app:app --bind $(HOST):$(PORT)

redis-server: ## Install redis-server (Debian/apt) when it is missing; tests start their own
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  else echo "redis-server not found: install it (apt-get install redis-server) to run the Redis tests"; fi; }

node: ## Install Node.js and npm (Debian/apt) when they are missing; the TypeScript client needs them
	@command -v npm >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "npm not found: install Node.js >= 20 and npm to build and test clients/js"; exit 1; fi; }

SOURCES := gatewayasgi tests examples benchmarks docs

lint: $(STAMP) ## ruff format check, ruff lint, and the import layers (lint-imports)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP) ## mypy --strict on the package
	$(VENV)/bin/mypy

unit: $(STAMP) ## Only the fast tests of the pure layers
	$(PY) -m pytest -q tests/unit

test: $(STAMP) redis-server node chromium $(CHAT_CLIENT) $(AI_EXAMPLE) lint typecheck docs ## Lint, type check, build the docs strictly, run the Python suite and the TypeScript client's
	cd tests/asyncapi && npm ci --no-audit --no-fund   # @asyncapi/parser and tsc for tests/asyncapi
	cd tests/socketio/conformance && npm ci --no-audit --no-fund   # the Socket.IO protocol test suite (mocha)
	cd tests/socketio/node && npm ci --no-audit --no-fund   # socket.io-client v4 for the real-client tests
	cd tests/ai/node && npm ci --no-audit --no-fund   # the ai package's WebSocketChatTransport for the AI SDK tests
	$(PY) -m pytest -q -n 2 --dist loadfile   # two processes, a test file each: most tests wait on sockets
	$(MAKE) --no-print-directory test-js

soak: $(STAMP) redis-server ## Run the reliability suite SOAK_RUNS times in a row (default 5)
	@for run in $$(seq $${SOAK_RUNS:-5}); do echo "soak run $$run"; \
	  $(PY) -m pytest -q tests/reliability || exit 1; done

# PyNest pins older FastAPI and uvicorn releases than the other peers are measured on, so
# its gateway module is installed without its pins (it needs only FastAPI and injector).
PYNEST := $(VENV)/.pynest
$(PYNEST): $(STAMP)
	$(PY) -m pip install --quiet --no-deps 'pynest-api==0.6.2' 'injector>=0.22,<0.23'
	touch $(PYNEST)

bench: $(STAMP) $(PYNEST) redis-server ## Run the benchmark suite (about 35 min); writes benchmarks/results/latest.{md,png}
	$(PY) -m benchmarks

bench-quick: $(STAMP) $(PYNEST) ## A short benchmark run (fewer repetitions, fewer peers)
	$(PY) -m benchmarks --quick

bench-ladder: $(STAMP) ## Echo throughput as the gateway's per-frame layers are added one by one
	$(PY) -m benchmarks --ladder

bench-recovery: $(STAMP) redis-server ## Session recovery's cost (on vs off, one process and two on Redis) and resume time (about 10 min)
	$(PY) -m benchmarks.recovery

# The documentation site (mkdocs.yml, docs/): broken links, anchors and references fail.
docs: $(STAMP) ## Build the documentation site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-serve: $(STAMP) ## Serve the documentation site on http://127.0.0.1:8001, rebuilt on change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

clean: ## Remove the virtualenv, caches and built artifacts
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site dist

test-js: $(STAMP) ## The TypeScript client's tests (clients/js) against a real gateway; needs node >= 20 and npm
	cd clients/js && npm ci --no-audit --no-fund && npm test
