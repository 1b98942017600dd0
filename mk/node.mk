# A real node without a registry: OCI archives of the images (make images, in mk/k8s.mk), and
# containerd + runc + CNI + kubelet + kube-proxy + CoreDNS built from the Go module proxy, all
# state under ~/.cache/authstack/node/state and a network namespace of its own: standalone
# (node-up, node-check) or joined to the control plane (`make cluster-up NODE=real`,
# test-node). Included from the Makefile.

NODE_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
NODE_CHECK_DIR := $(NODE_ROOT)/target/node-check

.PHONY: node-binaries node-up node-down node-check images-check test-node test-cluster bench-rotation-cluster test-node-faults

node-binaries: ## Build containerd, runc, the CNI plugins, crictl and CoreDNS from the Go modules (once per machine)
	$(NODE_ROOT)/scripts/node/binaries.sh

node-up: node-binaries ## Start the node in the background: containerd (images imported) and a standalone kubelet
	$(NODE_ROOT)/scripts/node/up.sh --kubelet

node-down: ## Stop the node and remove everything it created (processes, mounts, netns, cgroups, state)
	$(NODE_ROOT)/scripts/node/down.sh

images-check: images ## The archives agree with the Dockerfile and the operator's pod specs, and rebuild byte-identical
	@mkdir -p $(NODE_CHECK_DIR)
	$(or $(CARGO_TARGET_DIR),$(NODE_ROOT)/target)/release/authstack-render $(NODE_ROOT)/manifests/samples/minimal.yaml --namespace auth \
	  --postgres-image $(IMAGE_REGISTRY)/postgres:17 --rabbitmq-image $(IMAGE_REGISTRY)/rabbitmq:4.0 \
	  > $(NODE_CHECK_DIR)/rendered.yaml
	cd $(NODE_ROOT)/scripts/images && "$$(./venv.sh)" check_images.py --images $(NODE_ROOT)/target/images \
	  --rendered $(NODE_CHECK_DIR)/rendered.yaml --rebuild --cache $${AUTHSTACK_CACHE:-$$HOME/.cache/authstack}/images

node-check: images node-binaries ## The operator's pod specs as static pods of a real kubelet: Ready, hardened, answering
	$(NODE_ROOT)/scripts/node/up.sh --kubelet
	status=0; "$$($(NODE_ROOT)/scripts/images/venv.sh)" $(NODE_ROOT)/scripts/node/kubelet_check.py \
	  --render $(or $(CARGO_TARGET_DIR),$(NODE_ROOT)/target)/release/authstack-render --work $(NODE_CHECK_DIR) || status=$$?; \
	  $(NODE_ROOT)/scripts/node/down.sh; exit $$status

test-node: images ## The platform on a real node: cluster-up NODE=real, helm install, the sample Ready, the gateway through its Service; cluster-down after (~2 min warm)
	$(NODE_ROOT)/scripts/node/test-node.sh

test-cluster: test-node ## Another name for test-node

bench-rotation-cluster: images ## test-node plus a requested rotation, a revoke and a rotation by schedule under load through the gateway's Service: failures, p99 before/during/after
	$(NODE_ROOT)/scripts/node/test-node.sh --rotation

test-node-faults: images ## test-node plus the PostgreSQL, RabbitMQ and an auth-svc pod deleted under load: recovery times, no account lost, no gateway restart
	$(NODE_ROOT)/scripts/node/test-node.sh --faults
