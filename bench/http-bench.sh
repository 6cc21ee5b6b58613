#!/usr/bin/env bash
# HTTP benchmark of annald (issue 4, "Speed"): durable appends with 64
# connections and 256-byte payloads to one hot ledger and to 64 ledgers,
# GET /health as the HTTP ceiling in the same run, and inclusion-proof
# latency on a 1M-record ledger. Load generator: wrk (Debian package `wrk`)
# with the Lua scripts in bench/http/. Everything goes to 127.0.0.1; every
# wrk run is bounded in time; the daemon and its data are removed at exit.
#
# First, the same shapes against bare-append (bench/src/bin/bare-append.rs):
# the same HTTP stack and a redb group commit with nothing else, the floor
# under what a durable append costs here, so that each run shows how far
# annald is above it.
#
# Knobs (environment): DURATION_S (per shape, default 15), CONNECTIONS
# (default 64), WRK_THREADS (default 2), FILL_RECORDS (default 1000000;
# 0 skips the proof measurement), PROOF_CONNECTIONS (default "1 64"),
# FLOOR (default 1; 0 skips the bare-append shapes).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration_s=${DURATION_S:-15}
connections=${CONNECTIONS:-64}
threads=${WRK_THREADS:-2}
fill_records=${FILL_RECORDS:-1000000}
proof_connections=${PROOF_CONNECTIONS:-"1 64"}
floor=${FLOOR:-1}
target_dir=${CARGO_TARGET_DIR:-$root/target}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }

bins=(-p annal-daemon --bin annald)
((floor)) && bins+=(-p annal-bench --bin bare-append)
(cd "$root" && cargo build --release --locked "${bins[@]}")
annald="$target_dir/release/annald"

work=$(mktemp -d "${TMPDIR:-/tmp}/annal-http-bench.XXXXXX")
pid=""
stop() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  pid=""
}
cleanup() {
  stop
  rm -rf "$work"
}
trap cleanup EXIT

# wait_listening LOG: the address the server printed, once it did.
wait_listening() {
  local addr=""
  for _ in $(seq 1 300); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$1" | head -n1)
    [[ -n "$addr" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$1" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$addr" ]] || { echo "server did not start" >&2; cat "$1" >&2; exit 1; }
  echo "$addr"
}

export ANNAL_BENCH_DIR="$root/bench/http" ANNAL_BENCH_THREADS="$threads"
results="$work/results.txt"
: >"$results"

# run LABEL SCRIPT URL CONNECTIONS [extra env...]
run() {
  local label=$1 script=$2 url=$3 conns=$4
  shift 4
  local t=$threads
  ((conns < t)) && t=$conns
  env "$@" ANNAL_BENCH_LABEL="$label" wrk -t"$t" -c"$conns" -d"${duration_s}s" --timeout 10s \
    -s "$ANNAL_BENCH_DIR/$script" "$url" | tee -a "$results" | grep -E '^RESULT|Non-2xx|Socket errors' || true
}

# shapes PREFIX BASE: /health, one hot ledger, /health, 64 ledgers,
# /health. Each append shape sits between two /health runs and is compared
# with their mean: the host moves the /health rate by up to 20% from one
# minute to the next, and a single /health run before both shapes made the
# ratio of the later one mostly a measure of that drift.
shapes() {
  local p=$1 base=$2
  echo "== warm-up (3 s, not reported)"
  duration_s=3 run warmup append.lua "$base" "$connections" ANNAL_BENCH_LEDGERS=64 >/dev/null
  echo "== GET /health"
  run "${p}health" health.lua "$base/health" "$connections"
  echo "== appends, one hot ledger"
  run "${p}append-hot" append.lua "$base" "$connections" ANNAL_BENCH_LEDGERS=1
  echo "== GET /health"
  run "${p}health-mid" health.lua "$base/health" "$connections"
  echo "== appends, 64 ledgers"
  run "${p}append-64" append.lua "$base" "$connections" ANNAL_BENCH_LEDGERS=64
  echo "== GET /health"
  run "${p}health-after" health.lua "$base/health" "$connections"
}

if ((floor)); then
  echo "== floor: bare-append"
  "$target_dir/release/bare-append" "$work/bare" 2>"$work/bare.log" &
  pid=$!
  floor_addr=$(wait_listening "$work/bare.log")
  ANNAL_BENCH_KEY=none shapes floor- "http://$floor_addr"
  stop
  rm -rf "$work/bare"
fi

cat >"$work/annal.toml" <<TOML
[server]
listen = "127.0.0.1:0"

[rate_limit]
key_burst = 1000000
tenant_burst = 1000000
TOML

RUST_LOG=${RUST_LOG:-warn,annald=info} "$annald" serve --config "$work/annal.toml" \
  --data-dir "$work/data" 2>"$work/annald.log" &
pid=$!
addr=$(wait_listening "$work/annald.log")
base="http://$addr"

admin=$(cat "$work/data/dev-admin.key")
curl -sf -X POST -H "Authorization: Bearer $admin" "$base/admin/v1/tenants" -d '{"id":"bench"}' >/dev/null
key=$(curl -sf -X POST -H "Authorization: Bearer $admin" "$base/admin/v1/tenants/bench/keys" \
  | sed 's/.*"key":"\([^"]*\)".*/\1/')
[[ "$key" == annal_* ]] || { echo "could not create a tenant key" >&2; exit 1; }

export ANNAL_BENCH_KEY="$key"
shapes "" "$base"

proof_size=0
if ((fill_records > 0)); then
  echo "== filling ledger big with $fill_records records"
  # wrk runs for its whole duration, so fill in short bounded runs, sizing
  # the last one from the rate seen so far (it may overshoot by a little).
  size=0 rate=20000 rounds=0
  while ((size < fill_records)); do
    rounds=$((rounds + 1))
    ((rounds <= 200)) || { echo "fill did not finish" >&2; exit 1; }
    secs=$(( (fill_records - size) / rate + 1 ))
    ((secs > 10)) && secs=10
    before=$size
    ANNAL_BENCH_LEDGERS=1 ANNAL_BENCH_LEDGER=big ANNAL_BENCH_LABEL=fill wrk -t"$threads" -c"$connections" \
      -d"${secs}s" --timeout 10s -s "$ANNAL_BENCH_DIR/append.lua" "$base" >/dev/null
    size=$(curl -sf -H "Authorization: Bearer $admin" "$base/admin/v1/tenants/bench" \
      | grep -o '"ledger":"big","size":[0-9]*' | grep -o '[0-9]*$' || echo 0)
    (( size > before )) && rate=$(( (size - before) / secs ))
    ((rate > 0)) || rate=1000
  done
  echo "ledger big: $size records"
  curl -sf -X POST -H "Authorization: Bearer $admin" "$base/admin/v1/checkpoints" >/dev/null
  proof_size=$(curl -sf -H "Authorization: Bearer $key" "$base/v1/ledgers/big/checkpoint" | sed -n '2p')
  echo "ledger big: checkpoint size $proof_size"
  if ((proof_size < fill_records)); then
    echo "fill came up short ($proof_size < $fill_records)" >&2
    exit 1
  fi
  for c in $proof_connections; do
    echo "== inclusion proofs at $proof_size records, $c connection(s)"
    run "proof-c$c" proof.lua "$base" "$c" ANNAL_BENCH_PROOF_SIZE="$proof_size"
  done
fi

# The table. Fields of a RESULT line: label key=value...
field() { sed -n "s/^RESULT $1 .*$2=\([0-9]*\).*/\1/p" "$results" | head -n1; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
mean() { awk -v a="$(field "$1" rps)" -v b="$(field "$2" rps)" 'BEGIN { printf "%.0f", (a + b) / 2 }'; }
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); wrk -t$threads, ${duration_s}s per shape"
echo "ratio: an append shape's rate over the mean of the /health runs either side of it"
printf '| %-29s | %5s | %10s | %8s | %8s | %8s | %11s | %6s |\n' \
  shape conns "req/s" "p50 ms" "p99 ms" "non-2xx" "/health r/s" ratio
printf '|%s|\n' "-------------------------------|-------|------------|----------|----------|----------|-------------|--------"
# row LABEL SHAPE CONNECTIONS [/health rate to compare with]
row() {
  local label=$1 shape=$2 conns=$3 health_rps=${4:-}
  local rps p50 p99 bad ratio=""
  rps=$(field "$label" rps); p50=$(field "$label" p50_us); p99=$(field "$label" p99_us); bad=$(field "$label" non2xx)
  [[ -n "$rps" ]] || return 0
  [[ -n "$health_rps" ]] && ratio=$(awk -v a="$rps" -v b="$health_rps" 'BEGIN { printf "%.1f%%", 100 * a / b }')
  printf '| %-29s | %5s | %10s | %8s | %8s | %8s | %11s | %6s |\n' "$shape" "$conns" "$rps" \
    "$(ms "$p50")" "$(ms "$p99")" "$bad" "$health_rps" "$ratio"
}
row health "GET /health" "$connections"
row append-hot "append, 1 hot ledger" "$connections" "$(mean health health-mid)"
row health-mid "GET /health" "$connections"
row append-64 "append, 64 ledgers" "$connections" "$(mean health-mid health-after)"
row health-after "GET /health" "$connections"
for c in $proof_connections; do
  row "proof-c$c" "proof @ ${proof_size}" "$c"
done
if ((floor)); then
  row floor-health "floor: GET /health" "$connections"
  row floor-append-hot "floor: append, 1 hot ledger" "$connections" "$(mean floor-health floor-health-mid)"
  row floor-health-mid "floor: GET /health" "$connections"
  row floor-append-64 "floor: append, 64 ledgers" "$connections" "$(mean floor-health-mid floor-health-after)"
  row floor-health-after "floor: GET /health" "$connections"
  # Each server's /health costs differently (annald's carries request ids,
  # timeouts and more headers), so compare the append rates themselves.
  # of_floor SHAPE MID AFTER: annald's rate for SHAPE over the floor's, and
  # what 35% of annald's /health (the issue's target) is of the floor's rate.
  of_floor() {
    awk -v a="$(field "append-$1" rps)" -v ah="$(mean "$2" "$3")" -v f="$(field "floor-append-$1" rps)" \
      'BEGIN { if (f > 0) printf "%.0f%% (the target: %.0f%%)", 100 * a / f, 100 * 0.35 * ah / f }'
  }
  echo "annald's append rate over the floor's: one hot ledger $(of_floor hot health health-mid)," \
    "64 ledgers $(of_floor 64 health-mid health-after)"
fi
