#!/usr/bin/env bash
# Builds the three container images from the repository's Dockerfile (`make images`):
#   $IMAGE_REGISTRY/auth-svc:$IMAGE_TAG, $IMAGE_REGISTRY/gateway:$IMAGE_TAG,
#   $IMAGE_REGISTRY/operator:$IMAGE_TAG
# The build stage is shared, so the workspace is compiled once.
#
# Environment: IMAGE_REGISTRY (default ghcr.io/authstack), IMAGE_TAG (default: the workspace
# version from Cargo.toml), DOCKER (default docker), DOCKER_BUILD_ARGS (extra arguments for
# `docker build`, e.g. "--platform linux/arm64" or "--push" with buildx).
set -euo pipefail
# shellcheck source=scripts/k8s-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-env.sh"

DOCKER="${DOCKER:-docker}"
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/authstack}"
if [[ -z "${IMAGE_TAG:-}" ]]; then
  IMAGE_TAG="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p;}' "$REPO_ROOT/Cargo.toml")"
  IMAGE_TAG="${IMAGE_TAG%%$'\n'*}"
  [[ -n "$IMAGE_TAG" ]] || k8s_die "cannot read [workspace.package] version from Cargo.toml; set IMAGE_TAG"
fi

command -v "$DOCKER" >/dev/null 2>&1 ||
  k8s_die "'$DOCKER' is not installed: \`make images\` needs Docker with BuildKit (Docker 23+)"
if ! info_err="$("$DOCKER" info 2>&1 >/dev/null)"; then
  printf '%s\n' "$info_err" | tail -3 >&2
  k8s_die "no Docker engine answers ('$DOCKER info' failed): start Docker (or point DOCKER_HOST at one) to build images"
fi

export DOCKER_BUILDKIT=1
# shellcheck disable=SC2206 # DOCKER_BUILD_ARGS is split on purpose.
extra=(${DOCKER_BUILD_ARGS:-})
for target in auth-svc gateway operator; do
  image="$IMAGE_REGISTRY/$target:$IMAGE_TAG"
  k8s_log "building $image (--target $target)"
  "$DOCKER" build "$REPO_ROOT" \
    --file "$REPO_ROOT/Dockerfile" \
    --target "$target" \
    --build-arg "VERSION=$IMAGE_TAG" \
    --tag "$image" \
    "${extra[@]}"
done
k8s_log "built: $IMAGE_REGISTRY/{auth-svc,gateway,operator}:$IMAGE_TAG"
