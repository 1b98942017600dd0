# AuthStack entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run test test-rust test-interop test-attacks test-logs-reset log-scan chaos services lint docs-check fmt sqlx-prepare sqlx-check crds crds-check bench bench-bearer bench-peers bench-rotation rotation-demo clean-test-dbs fuzz fuzz-smoke test-ws test-api test-api-long test-docs-browser bench-ws

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## Run the platform locally: PostgreSQL, RabbitMQ, 2 auth-svc replicas, gateway on :8080
	scripts/run.sh

services: ## Install (if absent) and start PostgreSQL and RabbitMQ
	scripts/ensure-services.sh

test: services test-logs-reset lint docs-check sqlx-check test-rust test-interop test-attacks test-ws test-api test-docs-browser fuzz-smoke chart-check manifests-check log-scan ## Everything CI runs
	@echo "[test] all green"

test-logs-reset: ## Start the run's log collection (.test-logs/) afresh
	rm -rf .test-logs && mkdir -p .test-logs

test-rust: services crds-check k8s-binaries k8s-tools ## Unit, black-box and end-to-end tests on real PostgreSQL, RabbitMQ and kube-apiserver (cargo test --workspace)
	$(CARGO) test --workspace --locked

# The fault suite's long run (make test runs it once, briefly, within cargo test --workspace).
CHAOS_ROUNDS ?= 3
CHAOS_OUTAGE_SECS ?= 8
CHAOS_OBSERVE_SECS ?= 30
CHAOS_WORKERS ?= 8
chaos: services ## Fault suite, long: every fault CHAOS_ROUNDS (3) times, CHAOS_OUTAGE_SECS (8) down, CHAOS_OBSERVE_SECS (30) of load after
	$(CARGO) build --locked -p auth-svc --bin auth-svc
	FAULTS_ROUNDS=$(CHAOS_ROUNDS) FAULTS_OUTAGE_SECS=$(CHAOS_OUTAGE_SECS) \
	  FAULTS_OBSERVE_SECS=$(CHAOS_OBSERVE_SECS) FAULTS_WORKERS=$(CHAOS_WORKERS) \
	  $(CARGO) test --locked -p gateway --test faults -- --nocapture

test-interop: services ## Tokens of the real binaries verified by PyJWT from the JWKS
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/interop-test.sh

test-attacks: services ## Forged tokens (PyJWT) and broker injection (pika) against the real binaries
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/attack-test.sh

test-ws: services ## WebSocket /api/v1/ws of the real binaries judged by Python websockets (events, RPC, close codes)
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/ws-test.sh

test-api: services ## /openapi.json checked by openapi-spec-validator, then schemathesis against the live gateway (bounded: API_TEST_SECONDS, 100)
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/api-test.sh

test-api-long: services ## The same schemathesis run for 15 minutes
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	API_TEST_SECONDS=900 scripts/api-test.sh

test-docs-browser: services ## Headless Chromium renders /docs and /redoc offline; the DOM shows every operation (screenshots in .cache/)
	$(CARGO) build --locked -p auth-svc -p gateway -p authstack-dev
	scripts/docs-browser-test.sh

log-scan: ## Fail when a log of the test run (.test-logs/) holds a password, token or private key
	scripts/log-scan.py

fuzz-smoke: ## Each fuzz target FUZZ_SMOKE_SECONDS (20) from the committed seeds (nightly, cargo-fuzz)
	scripts/fuzz.sh smoke

fuzz: ## Each fuzz target FUZZ_SECONDS (300), growing the local corpus in fuzz/corpus
	scripts/fuzz.sh long

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

docs-check: ## Fail on references outside the repository, broken Markdown links, or a stale docs/metrics.md
	scripts/check-self-contained.sh

sqlx-prepare: services ## Regenerate .sqlx/ (compile-time checked SQL) against a throwaway migrated database; commit it
	scripts/sqlx-prepare.sh

sqlx-check: services ## Fail when .sqlx/ differs from what the queries and migrations need
	scripts/sqlx-prepare.sh --check

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
	  "SELECT datname FROM pg_database WHERE datname LIKE 'authstack\_test\_%' OR datname LIKE 'authstack\_interop\_%' OR datname LIKE 'authstack\_attack\_%'" \
	  | while read -r db; do [ -n "$$db" ] && psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE $$db WITH (FORCE)"; done

-include mk/k8s.mk
-include mk/node.mk

bench: ## Every path of docs/performance.md against same-run baselines (wrk, oha), the WebSocket (idle sockets, event latency); then the peers, if installed
	scripts/bench.sh
	BENCH_BUILD=0 scripts/bench-ws.sh
	scripts/peers/bench-peers.sh --if-installed

bench-ws: ## WebSocket only: 10,000 idle sockets (gateway RSS per socket), publish->client event latency with 1,000 sockets
	scripts/bench-ws.sh

bench-peers: ## AuthStack vs Keycloak and Dex (installed from the registries into ~/.cache/authstack)
	scripts/peers/bench-peers.sh

bench-bearer: ## /users/me with and without auth-svc's cache of verified access tokens (ratio)
	scripts/bench-bearer-cache.sh

bench-rotation: ## Rate and p50/p99 before, during and after a key rotation under steady load
	scripts/rotation-bench.sh

rotation-demo: ## The rotation scenario left running for your own clients and kubectl authstack
	ROTATION_MODE=demo scripts/rotation-bench.sh
