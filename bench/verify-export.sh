#!/usr/bin/env bash
# Benchmarks `annal-verify export` on synthetic exports of 1M and 4M records
# (256-byte payloads, a checkpoint every 1024 records) and prints records/s,
# wall time and peak RSS for each. Memory must not grow with the export.
# The data goes to bench-data/verify-export (gitignored) and is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/time ]; then
    apt-get update && apt-get install -y time
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p annal-verify -p annal-bench
bench="$target/release/annal-bench"
verify="$target/release/annal-verify"

data=bench-data/verify-export
mkdir -p "$data"
trap 'rm -rf "$data"' EXIT

# One core: the verifier is single-threaded; pinning keeps the number honest.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
    "$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') MHz; load average $(cut -d' ' -f1-3 /proc/loadavg)"
# records/s is against wall time; on a shared machine the CPU-time rate
# (records / (user + sys)) is the steadier number, so both are printed.
printf '%-10s %12s %12s %8s %8s %8s %12s\n' records "records/s" "rec/CPU-s" "wall s" "user s" "sys s" "peak RSS"
for n in 1000000 4000000; do
    export_file="$data/export-$n.jsonl"
    "$bench" gen-export --records "$n" --payload-bytes 256 --checkpoint-every 1024 \
        --out "$export_file" --trust-out "$data/trusted.keys" >/dev/null
    # Read it once so that both sizes are measured from the page cache.
    cat "$export_file" >/dev/null
    "${pin[@]}" /usr/bin/time -v -o "$data/time-$n.txt" \
        "$verify" export "$export_file" --trust-file "$data/trusted.keys" >"$data/out-$n.txt"
    grep -q "^verified: $n records" "$data/out-$n.txt" || { cat "$data/out-$n.txt"; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$data/time-$n.txt")
    user=$(awk -F': ' '/User time/ {print $2}' "$data/time-$n.txt")
    sys=$(awk -F': ' '/System time/ {print $2}' "$data/time-$n.txt")
    rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$data/time-$n.txt")
    rate=$(awk -v n="$n" -v s="$wall" 'BEGIN { printf "%.0f", n / s }')
    cpu_rate=$(awk -v n="$n" -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", n / (u + s) }')
    printf '%-10s %12s %12s %8s %8s %8s %8.1f MiB\n' "$n" "$rate" "$cpu_rate" "$wall" "$user" "$sys" \
        "$(awk -v k="$rss_kib" 'BEGIN { print k / 1024 }')"
    rm -f "$export_file"
done
