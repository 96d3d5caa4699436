#!/usr/bin/env bash
# Verification throughput: `fulcrum verify model` on a generated multi-file model (>= 2 GiB, from
# page cache), side by side in one run with the real `model_signing verify key` and with
# `openssl dgst -sha256` run as one process per core over the same files (the machine's SHA-256
# limit). Also: one large file hashed on all cores (shards) vs one core (files), and BLAKE3.
#
#   bash bench/verify-model.sh             # 4 x 512 MiB + config = 2 GiB, 5 runs each
#   FILE_MIB=128 RUNS=3 bash bench/verify-model.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."
FILE_MIB=${FILE_MIB:-512}; FILES=${FILES:-4}; RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p fulcrum-cli
F="$TARGET/release/fulcrum"
CACHE="${FULCRUM_CACHE:-$HOME/.cache/fulcrum}"
MS="${FULCRUM_MODEL_SIGNING:-$CACHE/venv-model-signing-1.1.1/bin/model_signing}"
if ! "$MS" --help >/dev/null 2>&1; then
  python3 -m venv "$CACHE/venv-model-signing-1.1.1"
  "$CACHE/venv-model-signing-1.1.1/bin/pip" install --quiet model-signing==1.1.1 pyopenssl==26.4.0
  MS="$CACHE/venv-model-signing-1.1.1/bin/model_signing"
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/model" "$T/single"
echo "generating $FILES x $FILE_MIB MiB..." >&2
for i in $(seq 1 "$FILES"); do head -c "$((FILE_MIB << 20))" /dev/urandom > "$T/model/shard-$i.safetensors"; done
echo '{"architectures":["Bench"],"hidden_size":4096}' > "$T/model/config.json"
cat "$T"/model/shard-*.safetensors > "$T/single/model.safetensors"
TOTAL=$(du -cb "$T"/model/* | tail -1 | cut -f1)
"$F" keys generate --alg ecdsa-p256-sha256 --out "$T/key.pk8" > "$T/pub.pem"
"$F" sign model "$T/model" --key "$T/key.pk8" --signature "$T/files.sig" >/dev/null
"$F" sign model "$T/model" --key "$T/key.pk8" --signature "$T/b3.sig" --hash blake3 >/dev/null
"$F" sign model "$T/single" --key "$T/key.pk8" --signature "$T/single-files.sig" >/dev/null
"$F" sign model "$T/single" --key "$T/key.pk8" --signature "$T/single-shards.sig" --method shards --shard-size 268435456 >/dev/null
cat "$T"/model/* "$T"/single/* > /dev/null   # page cache

CORES=$(nproc)
# openssl: one process per core, files dealt round-robin.
ossl() {
  local pids=() c
  for c in $(seq 0 $((CORES - 1))); do
    local mine=() i=0
    for f in "$T"/model/*; do [ $((i % CORES)) -eq "$c" ] && mine+=("$f"); i=$((i + 1)); done
    openssl dgst -sha256 "${mine[@]}" > /dev/null & pids+=($!)
  done
  wait "${pids[@]}"
}
declare -A CMD=(
  [openssl]="ossl"
  [fulcrum_files_sha256]="$F verify model $T/model --signature $T/files.sig --public-key $T/pub.pem"
  [model_signing]="$MS verify key $T/model --signature $T/files.sig --public_key $T/pub.pem"
  [fulcrum_files_blake3]="$F verify model $T/model --signature $T/b3.sig --public-key $T/pub.pem"
  [single_file_one_core]="$F verify model $T/single --signature $T/single-files.sig --public-key $T/pub.pem"
  [single_file_shards]="$F verify model $T/single --signature $T/single-shards.sig --public-key $T/pub.pem"
  [reverify_from_record]="$F verify model $T/model --signature $T/files.sig --public-key $T/pub.pem --record $T/model.record"
)
ORDER=(openssl fulcrum_files_sha256 model_signing fulcrum_files_blake3 single_file_one_core single_file_shards reverify_from_record)
declare -A TIMES
for name in "${ORDER[@]}"; do eval "${CMD[$name]}" > /dev/null 2>&1; done   # warm-up, and every verify must pass
for r in $(seq 1 "$RUNS"); do
  for name in "${ORDER[@]}"; do   # interleaved, round-robin
    s=$(date +%s.%N); eval "${CMD[$name]}" > /dev/null 2>&1 || { echo "$name failed" >&2; exit 1; }; e=$(date +%s.%N)
    TIMES[$name]+="$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.3f", b-a}') "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
declare -A MED
echo "| command | median s | GB/s |"
echo "|---|---|---|"
for name in "${ORDER[@]}"; do
  m=$(echo "${TIMES[$name]}" | median); MED[$name]=$m
  echo "| $name | $m | $(awk -v t="$TOTAL" -v m="$m" 'BEGIN{printf "%.2f", t/m/1e9}') |"
done
echo
ratio() { awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN{printf "%.2f", k*a/b}'; }
echo "fulcrum files/sha256 vs the openssl per-core limit: $(ratio "${MED[openssl]}" "${MED[fulcrum_files_sha256]}" 100) % (target >= 85 %)"
echo "fulcrum files/sha256 vs model_signing: $(ratio "${MED[model_signing]}" "${MED[fulcrum_files_sha256]}" 1) x"
echo "fulcrum files/blake3 vs model_signing: $(ratio "${MED[model_signing]}" "${MED[fulcrum_files_blake3]}" 1) x (target >= 3 x)"
echo "one $((FILE_MIB * FILES)) MiB file, shards on all cores vs one core: $(ratio "${MED[single_file_one_core]}" "${MED[single_file_shards]}" 1) x"
echo "re-verify of the unchanged model from its verified record: ${MED[reverify_from_record]} s (full: ${MED[fulcrum_files_sha256]} s)"
echo "model: $FILES x $FILE_MIB MiB + config = $TOTAL bytes; $RUNS runs each, interleaved; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
