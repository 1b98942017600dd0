# AuthStack entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run test test-rust test-interop services lint fmt crds crds-check bench bench-rotation rotation-demo clean-test-dbs

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## Run the platform locally: PostgreSQL, RabbitMQ, 2 auth-svc replicas, gateway on :8080
	scripts/run.sh

services: ## Install (if absent) and start PostgreSQL and RabbitMQ
	scripts/ensure-services.sh

test: services lint test-rust test-interop chart-check manifests-check ## Everything CI runs
	@echo "[test] all green"

test-rust: services crds-check ## Unit, black-box and end-to-end tests (cargo test --workspace)
	$(CARGO) test --workspace --locked

test-interop: services ## Tokens of the real binaries verified by PyJWT from the JWKS
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/interop-test.sh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate the CRD from the Rust types
	$(CARGO) run --locked -q -p authstack-operator --bin crdgen > crds/authstack.yaml
	cp crds/authstack.yaml charts/authstack-operator/crds/authstack.yaml

crds-check: ## Fail when the checked-in CRD is stale
	$(CARGO) run --locked -q -p authstack-operator --bin crdgen | diff -u crds/authstack.yaml - \
	  || { echo "crds/authstack.yaml is stale: run 'make crds'"; exit 1; }

clean-test-dbs: ## Drop databases left behind by interrupted test runs
	psql postgres://postgres@127.0.0.1:5432/postgres -tAc \
	  "SELECT datname FROM pg_database WHERE datname LIKE 'authstack\_test\_%' OR datname LIKE 'authstack\_interop\_%'" \
	  | while read -r db; do [ -n "$$db" ] && psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE $$db WITH (FORCE)"; done

-include mk/k8s.mk

bench: ## Throughput and latency of every DESIGN section 8 path against same-run baselines
	scripts/bench.sh

bench-rotation: ## Rate and p50/p99 before, during and after a key rotation under steady load
	scripts/rotation-bench.sh

rotation-demo: ## The rotation scenario left running for your own clients and kubectl authstack
	ROTATION_MODE=demo scripts/rotation-bench.sh
