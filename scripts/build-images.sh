#!/usr/bin/env bash
# Builds AuthStack's images (`make images`), with one of two builders:
#
#   IMAGE_BUILDER=oci (default): no registry, no container engine. Release binaries from
#     cargo plus Debian packages, written as OCI archives $IMAGES_DIR/<name>.oci.tar by
#     scripts/images/build.py: auth-svc, gateway, chat and operator (the Dockerfile's targets,
#     on a rebuilt distroless base), and postgres and rabbitmq (stand-ins for the official
#     images the operator runs by default). Import with `ctr images import`, or copy to a
#     registry with `skopeo copy oci-archive:<file> docker://<name>`.
#   IMAGE_BUILDER=docker: the Dockerfile with Docker/BuildKit, for users with a registry:
#     $IMAGE_REGISTRY/{auth-svc,gateway,operator,chat}:$IMAGE_TAG.
#
# Environment: IMAGE_REGISTRY (default ghcr.io/authstack), IMAGE_TAG (default: the workspace
# version from Cargo.toml), IMAGES_DIR (default target/images), IMAGES (space-separated subset
# of names, oci only), SOURCE_DATE_EPOCH (image timestamp; default: the last commit's time),
# IMAGES_APT_MAX_AGE_HOURS (refresh Debian's package lists when older; default 24), DOCKER
# (default docker), DOCKER_BUILD_ARGS (extra `docker build` arguments, e.g. "--push").
set -euo pipefail
# shellcheck source=scripts/k8s-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-env.sh"

IMAGE_BUILDER="${IMAGE_BUILDER:-oci}"
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/authstack}"
if [[ -z "${IMAGE_TAG:-}" ]]; then
  IMAGE_TAG="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p;}' "$REPO_ROOT/Cargo.toml")"
  IMAGE_TAG="${IMAGE_TAG%%$'\n'*}"
  [[ -n "$IMAGE_TAG" ]] || k8s_die "cannot read [workspace.package] version from Cargo.toml; set IMAGE_TAG"
fi

build_oci() {
  local images_dir="${IMAGES_DIR:-$REPO_ROOT/target/images}"
  local cache="${AUTHSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authstack}/images"
  local python
  python="$("$K8S_SCRIPTS/images/venv.sh")"
  # authstack-render too: `make images-check` and `make node-check` compare the images with
  # the operator's pod specs (one cargo invocation, so the dependencies build once).
  k8s_log "building the release binaries (cargo build --release)"
  "${CARGO:-cargo}" build --release --locked -p auth-svc --bin auth-svc -p gateway --bin gateway \
    -p authstack-operator --bin authstack-operator --bin authstack-render \
    -p authstack-chat --bin authstack-chat
  if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null)" ||
      k8s_die "not a git checkout: set SOURCE_DATE_EPOCH (the images' timestamp)"
  fi
  export SOURCE_DATE_EPOCH
  k8s_log "writing OCI archives to ${images_dir#"$REPO_ROOT"/}"
  # shellcheck disable=SC2086 # IMAGES is a list of names.
  "$python" "$K8S_SCRIPTS/images/build.py" --out "$images_dir" \
    --registry "$IMAGE_REGISTRY" --tag "$IMAGE_TAG" --cache "$cache" \
    --apt-max-age-hours "${IMAGES_APT_MAX_AGE_HOURS:-24}" --only ${IMAGES:-}
}

build_docker() {
  local docker="${DOCKER:-docker}"
  command -v "$docker" >/dev/null 2>&1 ||
    k8s_die "'$docker' is not installed: IMAGE_BUILDER=docker needs Docker with BuildKit (Docker 23+)"
  local info_err
  if ! info_err="$("$docker" info 2>&1 >/dev/null)"; then
    printf '%s\n' "$info_err" | tail -3 >&2
    k8s_die "no Docker engine answers ('$docker info' failed): start Docker (or point DOCKER_HOST at one) to build images"
  fi
  export DOCKER_BUILDKIT=1
  # shellcheck disable=SC2206 # DOCKER_BUILD_ARGS is split on purpose.
  local extra=(${DOCKER_BUILD_ARGS:-}) target image
  for target in auth-svc gateway operator chat; do
    image="$IMAGE_REGISTRY/$target:$IMAGE_TAG"
    k8s_log "building $image (--target $target)"
    "$docker" build "$REPO_ROOT" \
      --file "$REPO_ROOT/Dockerfile" \
      --target "$target" \
      --build-arg "VERSION=$IMAGE_TAG" \
      --tag "$image" \
      "${extra[@]}"
  done
  k8s_log "built: $IMAGE_REGISTRY/{auth-svc,gateway,operator,chat}:$IMAGE_TAG"
}

case "$IMAGE_BUILDER" in
  oci) build_oci ;;
  docker) build_docker ;;
  *) k8s_die "IMAGE_BUILDER must be oci or docker, not '$IMAGE_BUILDER'" ;;
esac
