#!/usr/bin/env bash
# Runs the load generator against Baton (SQLite, release build) and against the stock
# automerge-repo sync server, with the same settings, on 127.0.0.1. Prints one JSON line each.
#
#   tests/bench/load.sh [devices] [rate] [seconds] [per_task] [ingest] [ingest_batch]
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-1000}
rate=${2:-1000}
seconds=${3:-10}
per_task=${4:-4}
ingest=${5:-0}
ingest_batch=${6:-1}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --locked -q -p baton-e2e --bin baton-load --bin baton-server-e2e
(cd tests/js && { [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error; })

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # label target url pid [extra...]
  "$target_dir/release/baton-load" --label "$1" --target "$2" --url "$3" --server-pid "$4" \
    --devices "$devices" --rate "$rate" --seconds "$seconds" --per-task "$per_task" \
    --ingest "$ingest" --ingest-batch "$ingest_batch" "${@:5}"
}

# Every simulated device signs in as the same nurse: lift the per-user socket cap for the run.
BATON_LOG=warn "$target_dir/release/baton-server-e2e" serve --demo \
  --data-dir "$work/baton" --listen 127.0.0.1:7790 --max-connections-per-user 100000 >/dev/null &
baton=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7790/readyz >/dev/null && break; sleep 0.1; done
run baton baton ws://127.0.0.1:7790/sync "$baton" --data-dir "$work/baton"
kill "$baton"; wait "$baton" 2>/dev/null || true

PORT=7791 DATA_DIR="$work/stock" node tests/js/stock-sync-server.mjs >/dev/null &
stock=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7791/ >/dev/null && break; sleep 0.1; done
run stock stock ws://127.0.0.1:7791 "$stock"
kill "$stock"; wait "$stock" 2>/dev/null || true
