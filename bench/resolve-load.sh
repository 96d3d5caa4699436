#!/usr/bin/env bash
# Load benchmark of GET /v1/resolve against a bare axum handler returning the same bytes,
# side by side in one run (the ratio is what matters on a noisy machine).
#
#   bash bench/resolve-load.sh            # 1,000 models × 100 versions = 100,000 versions, 64 connections, 20 s each
#   MODELS=100 PER=10 DUR=5s bash bench/resolve-load.sh   # quick look
#   STORE=postgres bash bench/resolve-load.sh              # the registry on a private PostgreSQL
#
# Prints a Markdown table: requests/s, p50/p99 latency, the ratio, and the registry's RSS
# (peak while serving the load, with every version registered).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-1000}; PER=${PER:-100}; DUR=${DUR:-20s}; CONNS=${CONNS:-64}; THREADS=${THREADS:-2}
export MODELS TOKEN=bench-agent-token
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p fulcrum-cli -p fulcrum-bench
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
T=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

DB_ARGS=()
if [ "${STORE:-sqlite}" = postgres ]; then
  # A private cluster, run as the unprivileged postgres user when we are root. Resolve never
  # touches it (answers come from memory), so commits need not be durable for this measurement.
  PGBIN=${FULCRUM_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  mkdir -p "$T/pg" && chmod 755 "$T" && { [ "$(id -u)" != 0 ] || chown postgres "$T/pg"; }
  PGPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  as_pg "$PGBIN/initdb" -D "$T/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $T/pg -c fsync=off -c synchronous_commit=off" start >/dev/null
  trap 'as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null 2>&1 || true; cleanup' EXIT
  DB_ARGS=(--database-url "postgres://postgres@127.0.0.1:$PGPORT/postgres")
fi
echo "seeding $MODELS models x $PER versions (${STORE:-sqlite})..." >&2
"$TARGET/release/fulcrum-bench" seed --data-dir "$T/data" "${DB_ARGS[@]}" --models "$MODELS" --versions-per-model "$PER" >&2
cat > "$T/tokens.json" <<JSON
{"tokens":[{"token":"$TOKEN","subject":"bench-agent","role":"serving","tenant":"bench","domain":"*","env":"prod"}]}
JSON
FULCRUM_LOG=warn "$TARGET/release/fulcrum" serve --listen 127.0.0.1:0 --data-dir "$T/data" "${DB_ARGS[@]}" --tokens-file "$T/tokens.json" > "$T/serve.out" 2>"$T/serve.err" &
REG_PID=$!; PIDS+=("$REG_PID")
for _ in $(seq 200); do grep -q listening "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
REG=$(sed -n 's/^fulcrum: listening on //p' "$T/serve.out")
curl -sf -H "Authorization: Bearer $TOKEN" "$REG/v1/resolve?ref=model-00000@production&env=prod" -o "$T/body.json"
RSS_IDLE=$(awk '/VmRSS/{print $2}' /proc/$REG_PID/status)

"$TARGET/release/fulcrum-bench" bare --listen 127.0.0.1:0 --body "$T/body.json" > "$T/bare.out" &
PIDS+=("$!")
for _ in $(seq 100); do grep -q listening "$T/bare.out" 2>/dev/null && break; sleep 0.1; done
BARE=$(sed -n 's/^bare listening on //p' "$T/bare.out")

run() { wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -s bench/resolve.lua "$1" > "$2"; }
rps() { awk '/^Requests\/sec/{print $2}' "$1"; }
pct() { awk -v p="$2" '$1==p{print $2}' "$1"; }
non2xx() { awk '/Non-2xx/{print $5}' "$1"; }

# Warm both, then measure: bare, registry (RSS sampled during the registry run), bare again.
wrk -t1 -c4 -d2s -s bench/resolve.lua "$REG" >/dev/null; wrk -t1 -c4 -d2s -s bench/resolve.lua "$BARE" >/dev/null
# Interleaved: bare, registry, bare, registry, bare — the ratio is mean/mean, so a slow or fast
# spell of the (shared, virtualised) machine weighs on both sides.
run "$BARE" "$T/bare1.txt"
( peak=0; while kill -0 "$REG_PID" 2>/dev/null; do r=$(awk '/VmRSS/{print $2}' /proc/$REG_PID/status); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$T/rss_peak"; sleep 0.2; done ) &
SAMPLER=$!
run "$REG" "$T/reg1.txt"
run "$BARE" "$T/bare2.txt"
run "$REG" "$T/reg2.txt"
kill "$SAMPLER" 2>/dev/null || true
run "$BARE" "$T/bare3.txt"

mean() { awk '{s+=$1} END{printf "%.0f", s/NR}'; }
BARE_RPS=$(for f in bare1 bare2 bare3; do rps "$T/$f.txt"; done | mean)
REG_RPS=$(for f in reg1 reg2; do rps "$T/$f.txt"; done | mean)
RATIO=$(awk -v r="$REG_RPS" -v b="$BARE_RPS" 'BEGIN{printf "%.1f", 100*r/b}')
PEAK_KB=$(cat "$T/rss_peak")
for f in reg1 reg2; do
  [ -z "$(non2xx "$T/$f.txt")" ] || { echo "registry answered non-2xx: $(non2xx "$T/$f.txt")" >&2; exit 1; }
done

echo "| server | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
for f in bare1 reg1 bare2 reg2 bare3; do
  case $f in bare*) name="bare axum handler, same bytes (${f#bare})";; reg*) name="fulcrum GET /v1/resolve (${f#reg})";; esac
  echo "| $name | $(rps "$T/$f.txt") | $(pct "$T/$f.txt" 50%) | $(pct "$T/$f.txt" 99%) |"
done
echo
echo "resolve / bare = ${RATIO} %  (registry mean of 2 runs: $REG_RPS req/s; bare mean of 3 runs: $BARE_RPS req/s)"
echo "registry RSS with $((MODELS * PER)) versions: idle $((RSS_IDLE / 1024)) MiB, peak under load $((PEAK_KB / 1024)) MiB"
# Every resolve is an access decision of the policy in force, logged: count what was stored.
REQS=$(( $(awk '/requests in/{print $1}' "$T/reg1.txt") + $(awk '/requests in/{print $1}' "$T/reg2.txt") ))
sleep 0.5
METRICS=$(curl -sf "$REG/metrics")
LOGGED=$(awk '/^fulcrum_access_decisions_logged /{print $2}' <<<"$METRICS")
DROPPED=$(awk '/^fulcrum_access_decisions_dropped /{print $2}' <<<"$METRICS")
echo "access decisions logged: $LOGGED (registry runs answered $REQS requests, plus warm-up); dropped: $DROPPED"
[ "$DROPPED" = "0" ] || { echo "decisions were dropped" >&2; exit 1; }
[ "$LOGGED" -ge "$REQS" ] || { echo "fewer decisions logged than requests answered" >&2; exit 1; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t$THREADS -c$CONNS -d$DUR"
