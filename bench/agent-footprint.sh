#!/usr/bin/env bash
# The serving agent's footprint: release binary size, and the RSS of an idle `fulcrum-agent
# guard` (started, model placed, following the event stream) next to a real registry.
#
#   bash bench/agent-footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p fulcrum-cli -p fulcrum-agent
T=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

cat > "$T/tokens.json" <<JSON
{"tokens":[
 {"token":"t-ci","subject":"ci","role":"publisher","tenant":"acme","domain":"*"},
 {"token":"t-rm","subject":"rm","role":"release-manager","tenant":"acme","domain":"*"},
 {"token":"t-ana","subject":"ana","role":"approver","tenant":"acme","domain":"*"},
 {"token":"t-bo","subject":"bo","role":"security-officer","tenant":"acme","domain":"*"},
 {"token":"t-agent","subject":"agent","role":"serving","tenant":"acme","domain":"*","env":"prod"}]}
JSON
FULCRUM_LOG=warn "$TARGET/release/fulcrum" serve --listen 127.0.0.1:0 --data-dir "$T/data" --tokens-file "$T/tokens.json" > "$T/serve.out" 2>"$T/serve.err" &
PIDS+=("$!")
for _ in $(seq 200); do grep -q listening "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
REG=$(sed -n 's/^fulcrum: listening on //p' "$T/serve.out")
api() { local who=$1 method=$2 path=$3; shift 3; curl -sf -X "$method" -H "Authorization: Bearer t-$who" -H 'content-type: application/json' "$REG$path" "$@"; }

head -c 8388608 /dev/urandom > "$T/weights.bin"
D="sha256:$(sha256sum "$T/weights.bin" | cut -d' ' -f1)"
api ci POST /v1/models -d '{"name":"fraud","domain":"fraud"}' >/dev/null
api ci PUT "/v1/blobs/$D" --data-binary @"$T/weights.bin" -H 'content-type: application/octet-stream' >/dev/null
api ci POST /v1/models/fraud/versions -d "{\"version\":\"v1\",\"files\":[{\"path\":\"weights.bin\",\"size\":8388608,\"digest\":\"$D\"}],\"model_card\":{\"owner\":\"fraud\",\"intended_use\":\"scoring\"},\"revalidate_by\":\"2099-01-01T00:00:00Z\"}" >/dev/null
api rm POST /v1/models/fraud/versions/v1/promotions -d '{"to":"Staging"}' >/dev/null
api ana POST /v1/models/fraud/versions/v1/approvals -d '{}' >/dev/null
api bo POST /v1/models/fraud/versions/v1/approvals -d '{}' >/dev/null
api rm POST /v1/models/fraud/versions/v1/promotions -d '{"to":"Approved"}' >/dev/null
api rm PUT /v1/models/fraud/aliases/production -d '{"version":"v1","chg_id":"CHG-1"}' >/dev/null

printf 't-agent' > "$T/token"
A=("$TARGET/release/fulcrum-agent" --registry "$REG" --token-file "$T/token" --bundle "$T/bundle.json" --state "$T/state")
"${A[@]}" pin "$T/bundle.json" >/dev/null
"${A[@]}" guard --ref fraud@production --env prod --dest "$T/model" --listen 127.0.0.1:0 2>"$T/guard.err" &
GPID=$!; PIDS+=("$GPID")
for _ in $(seq 200); do [ -f "$T/model/weights.bin" ] && break; sleep 0.1; done
[ -f "$T/model/weights.bin" ] || { echo "the guard never placed the model" >&2; cat "$T/guard.err" >&2; exit 1; }
sleep 5   # idle: following the stream, nothing happening
RSS=$(awk '/VmRSS/{print $2}' /proc/$GPID/status)
HWM=$(awk '/VmHWM/{print $2}' /proc/$GPID/status)
SIZE=$(stat -c %s "$TARGET/release/fulcrum-agent")
echo "| measure | value |"
echo "|---|---|"
echo "| \`fulcrum-agent\` release binary | $((SIZE / 1024 / 1024)) MiB ($SIZE bytes) |"
echo "| idle guard RSS (8 MiB model placed, event stream open) | $((RSS / 1024)) MiB |"
echo "| guard peak RSS (VmHWM, including the fetch) | $((HWM / 1024)) MiB |"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
