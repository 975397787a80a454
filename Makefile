# cass-cdc-pg — every entry point a developer or CI needs. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE      ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cass-cdc-pg
UV_VERSION := 0.13.8
UV         := $(CACHE)/tools/uv-$(UV_VERSION)/bin/uv
PYTHON     ?= python3.11
VENV       := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REF  ?= localhost/cass-cdc-pg:$(VERSION)
PYTEST_ARGS ?=
# Everything the suite uses, started (and on a fresh machine built) before pytest runs.
STACK_COMPONENTS ?= postgres redis vault kafka cassandra k8s node

.PHONY: help deps doctor install lint fmt test test-unit stack-up stack-down stack-status demo bench-worker print-image

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The one install step for Debian packages (hack/packages.txt); then the doctor's report, which
# stops here with what is missing and how to fix it, instead of deep inside a build.
deps: ## install the Debian packages the project needs (as root), then check prerequisites
	hack/stack deps

doctor: ## list prerequisites and packages with versions, or what is missing and the fix
	hack/stack doctor

$(UV):
	$(PYTHON) -m venv $(CACHE)/tools/uv-$(UV_VERSION)
	$(CACHE)/tools/uv-$(UV_VERSION)/bin/pip install -q uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: deps $(VENV)/.synced ## create .venv with the locked dependencies and the project

lint: install ## ruff + mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

stack-up: deps ## start the local stack (hack/stack up)
	hack/stack up $(STACK_COMPONENTS)

stack-down: ## stop every process of the local stack
	hack/stack down

stack-status:
	hack/stack status

test-unit: install ## fast tests, no services
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

# The production topology as a SEPARATE stack (own state directory, every port + 2000), so the
# default stack others test against is never touched: a 3-node Cassandra ring (127.0.0.1-3) with
# one supervised agent per node and 3 KRaft brokers; tests/topology runs against it, then it is
# stopped whatever the outcome. Not part of `make test` (about 4 minutes to start on 2 cores).
TOPOLOGY_STATE ?= $(CURDIR)/.stack/topology
# Topic prefix `secure`: the agents' topics fall under the stack's Kafka ACL prefix, so workers
# read them over SASL_SSL as the `worker` user (the chaos run's secure hops).
TOPOLOGY_ENV := CDC_STACK_STATE=$(TOPOLOGY_STATE) CDC_STACK_PORT_OFFSET=2000 \
  CDC_STACK_CASSANDRA_NODES=3 CDC_STACK_KAFKA_BROKERS=3 CDC_DEBEZIUM_TOPIC_PREFIX=secure
.PHONY: test-topology topology-down
test-topology: install ## 3-node ring + 3 brokers as a separate stack, tests/topology, then stop it
	export $(TOPOLOGY_ENV); trap 'hack/stack down' EXIT; \
	  hack/stack up postgres redis kafka cassandra debezium; \
	  $(VENV)/bin/pytest tests/topology $(PYTEST_ARGS)

topology-down: ## stop the separate topology stack of `make test-topology` (by its PIDs)
	export $(TOPOLOGY_ENV); hack/stack down

# pytest exits 5 when it collected no test: that is a failure here, like any non-zero code.
.PHONY: audit
audit: install ## bandit over the shipped code; pip-audit over uv.lock (needs PyPI's JSON API)
	$(VENV)/bin/bandit -c pyproject.toml -r operator worker -q
	mkdir -p build
	$(UV) export --frozen --no-hashes --no-emit-project --format requirements-txt -q \
	  -o build/audit-requirements.txt
	$(VENV)/bin/pip-audit --no-deps --disable-pip --progress-spinner off \
	  -r build/audit-requirements.txt

# hack/test-suite runs lint and audit, starts the stack, builds Kubernetes/Prometheus/the image
# in the background while the tests that need none of them run, then the rest (see its header).
test: deps ## install everything, lint, start the stack, run the whole suite
	hack/test-suite $(PYTEST_ARGS)

demo: deps install ## the main job: the product end to end on the local stack (see README)
	$(VENV)/bin/python hack/demo/run.py $(DEMO_ARGS)

print-image: ## the image tag `make image` builds
	@echo $(IMAGE_REF)

bench-worker: install stack-up ## benchmark one worker draining Kafka into PostgreSQL (not in make test)
	$(VENV)/bin/python bench/worker_bench.py

.PHONY: bench-debezium
bench-debezium: install ## Debezium agent latency, CQL write -> Kafka (not in make test)
	hack/stack up kafka cassandra debezium
	$(VENV)/bin/python bench/debezium_latency.py

.PHONY: crds
crds: install ## regenerate crds/ and the chart's CRDs and RBAC rules from the operator's models
	$(VENV)/bin/cdc-operator crds

.PHONY: wheelhouse image
wheelhouse: deps $(UV) ## the locked dependencies as wheels for the image's Python (build/wheelhouse)
	UV=$(UV) PIP_PYTHON=$(dir $(UV))python hack/image/wheelhouse.sh

image: deps wheelhouse ## build the Dockerfile with buildah on a local Debian base (localhost/cass-cdc-pg)
	hack/image/build.sh

.PHONY: bench-verify
bench-verify: install ## scanner: plain SELECT vs backfill vs verify, 1M rows (BENCH_ROWS; not in make test)
	$(VENV)/bin/python bench/verify_bench.py

# Faults under load on the SEPARATE topology stack (like test-topology: started with TOPOLOGY_ENV,
# stopped whatever the outcome): 3 workers, >= 500 writes/s, worker/agent/node/broker kills,
# PostgreSQL/Redis/OpenBao outages, a rebalance, then overlapping faults; PostgreSQL compared with
# Cassandra row by row. About 25 minutes. CHAOS_RATE, CHAOS_WORKER_KILLS, CHAOS_ALERTS=0.
.PHONY: bench-chaos
bench-chaos: install ## chaos under load on the 3-node ring + 3 brokers (bench-results/chaos_bench.json)
	export $(TOPOLOGY_ENV); trap 'hack/stack down' EXIT; \
	  hack/stack up postgres redis vault kafka cassandra debezium; \
	  $(VENV)/bin/python bench/chaos_bench.py

.PHONY: bench-operator
bench-operator: install ## operator: apply->Ready with 10 tables, and 200 pipelines x 10 tables (not in make test)
	$(VENV)/bin/python bench/operator_bench.py
