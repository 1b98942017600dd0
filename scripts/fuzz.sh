#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (README "Tests and benchmarks", fuzz/Cargo.toml).
#
#   scripts/fuzz.sh smoke [TARGET...]   each target FUZZ_SMOKE_SECONDS (default 20) from the
#                                       committed seeds, with a throw-away corpus (make test)
#   scripts/fuzz.sh long  [TARGET...]   each target FUZZ_SECONDS (default 300), growing the local
#                                       corpus fuzz/corpus/<target> (make fuzz)
#   scripts/fuzz.sh build               only build
#
# One libFuzzer process per target, one target at a time (the machine is shared). A crash stops
# the run: the input is written to fuzz/artifacts/<target>/ and the command to replay it is
# printed. Fix the bug with a unit test in the crate, then keep the input as a seed:
# `cp fuzz/artifacts/<target>/crash-… fuzz/seeds/<target>/`.
#
# Environment: FUZZ_SECONDS, FUZZ_SMOKE_SECONDS, FUZZ_SEED (smoke runs' libFuzzer seed), FUZZ_TARGET_DIR (default: $CARGO_TARGET_DIR/fuzz
# when set, else fuzz/target), FUZZ_RSS_LIMIT_MB (2048).
# Needs Rust nightly (`cargo +nightly`); installs cargo-fuzz into ~/.cache/authstack/tools when
# it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TOOLS="${AUTHSTACK_TOOLS:-$HOME/.cache/authstack/tools}"
export PATH="$TOOLS/bin:$PATH"
mode="${1:-smoke}"
shift || true

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: Rust nightly is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
  CARGO_INSTALL_ROOT="$TOOLS" cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}}"
target_dir="${target_dir:-$PWD/fuzz/target}"
# Smoke and long runs share this one build; change it in one place only.
build_flags=(--sanitizer none --debug-assertions --codegen-units 16 --target-dir "$target_dir")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

# The fuzz crate is outside the workspace, so `make lint` does not see it.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
(cd fuzz && cargo +nightly fuzz build "${build_flags[@]}")
[ "$mode" = build ] && exit 0

case "$mode" in
  smoke) seconds="${FUZZ_SMOKE_SECONDS:-20}" ;;
  long) seconds="${FUZZ_SECONDS:-300}" ;;
  *) echo "usage: $0 smoke|long|build [TARGET...]" >&2; exit 2 ;;
esac

# The keyring target writes a mounted-Secret directory under TMPDIR: keep it private.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch/tmp"
mkdir -p "$TMPDIR"

for target in "${targets[@]}"; do
  seeds="$PWD/fuzz/seeds/$target"
  mkdir -p "$seeds" "fuzz/artifacts/$target"
  if [ "$mode" = long ]; then
    corpus="$PWD/fuzz/corpus/$target"
  else
    corpus="$scratch/corpus/$target"
  fi
  mkdir -p "$corpus"
  echo "fuzz: $target for ${seconds}s (corpus $corpus, seeds $seeds)"
  log="$scratch/$target.log"
  # No -jobs/-workers: one process, one core for fuzzing and the other for everyone else.
  # The smoke run uses a fixed libFuzzer seed (FUZZ_SEED), so `make test` explores the same
  # inputs each time and a CI result can be reproduced; `make fuzz` explores afresh.
  seed_flag=()
  [ "$mode" = long ] || seed_flag=(-seed="${FUZZ_SEED:-20261206}")
  if (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$target" "$corpus" "$seeds" -- \
      "${seed_flag[@]}" -max_total_time="$seconds" -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" -timeout=10 \
      -print_final_stats=1 -artifact_prefix="artifacts/$target/") >"$log" 2>&1; then
    grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" \
      | sed 's/^/  /'
  else
    # The panic message and the input (libFuzzer's own output is in the log, mostly noise).
    { grep -A3 'panicked at' "$log"; grep -A14 '^Failing input' "$log"; } | cut -c1-600 >&2 \
      || tail -n 40 "$log" >&2
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/; replay with" >&2
    echo "  (cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $target artifacts/$target/<file>)" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, no crash"
