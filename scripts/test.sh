#!/usr/bin/env bash
# Every Fulcrum check and test, as CI runs them (`.ci/run` calls exactly this).
#
# Works on a fresh Debian machine with only Rust installed: it installs what the suites need.
# The embedded default (SQLite, local blobs, local key) needs no service; suites for external
# services (PostgreSQL, NATS, SoftHSM2, the test IdP, S3) install and start their own here, and
# under CI=true a suite whose service is missing fails rather than skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# Builds are reused across clones (CI clones into a fresh folder each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fulcrum/target}"
export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "format"
cargo fmt --all -- --check

step "lint (clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "dependency policy: one crypto provider (aws-lc-rs); ring and openssl-sys stay out"
for bad in ring openssl-sys; do
  # `cargo tree -i` prints nothing (and may still exit 0) when the crate is only in the lock file.
  users=$(cargo tree --workspace --locked -e normal,build,dev -i "$bad" 2>/dev/null || true)
  if [ -n "$users" ]; then
    echo "dependency policy violated: $bad is in the graph:" >&2
    echo "$users" >&2
    exit 1
  fi
done

step "tests (unit, property, API through the real server, CLI, crash)"
if cargo nextest --version >/dev/null 2>&1; then
  # (no doctests exist; nextest would not run them)
  cargo nextest run --workspace --locked --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --locked --no-fail-fast
fi
