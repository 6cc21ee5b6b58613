#!/usr/bin/env bash
# Webhook delivery throughput of annald: one endpoint follows acme/orders,
# RECORDS records are appended as fast as 8 connections go, and a Python
# receiver on 127.0.0.1 (bench/webhooks/receiver.py, 204 to everything)
# prints how many deliveries it took and at what rate. Everything goes to
# 127.0.0.1; the daemon, the receiver and their data are removed at exit.
#
# Knobs (environment): RECORDS (default 20000), CONCURRENCY (the daemon's
# webhooks.concurrency, default 8), WAIT_S (how long the receiver is
# watched after the appends, default 20).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
records=${RECORDS:-20000}
concurrency=${CONCURRENCY:-8}
wait_s=${WAIT_S:-20}
target_dir=${CARGO_TARGET_DIR:-$root/target}
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }

(cd "$root" && cargo build --release --locked -p annal-daemon --bin annald)
annald="$target_dir/release/annald"

work=$(mktemp -d "${TMPDIR:-/tmp}/annal-webhook-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
receiver_port=$(free_port)
daemon_port=$(free_port)
python3 "$root/bench/webhooks/receiver.py" "$receiver_port" > "$work/receiver.log" 2>&1 &
pids+=($!)
printf '[rate_limit]\nkey_burst = 1000000\ntenant_burst = 1000000\n[webhooks]\nconcurrency = %s\n' \
    "$concurrency" > "$work/annal.toml"
"$annald" serve --config "$work/annal.toml" --listen "127.0.0.1:$daemon_port" --data-dir "$work/data" \
    > "$work/annald.log" 2>&1 &
pids+=($!)
base="http://127.0.0.1:$daemon_port"
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

admin=$(cat "$work/data/dev-admin.key")
curl -sf -X POST -H "Authorization: Bearer $admin" -d '{"id":"acme"}' "$base/admin/v1/tenants" >/dev/null
key=$(curl -sf -X POST -H "Authorization: Bearer $admin" "$base/admin/v1/tenants/acme/keys" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
curl -sf -H "Authorization: Bearer $key" -d "{\"url\":\"http://127.0.0.1:$receiver_port/hook\"}" \
    "$base/v1/ledgers/orders/webhooks" >/dev/null

echo "annald $("$annald" --version | cut -d' ' -f2-), webhooks.concurrency=$concurrency, $records records"
python3 "$root/bench/webhooks/load.py" "$daemon_port" "$key" "$records" 8
for _ in $(seq "$wait_s"); do
    sleep 1
    line=$(tail -n 1 "$work/receiver.log")
    case "$line" in "count=$records "* | "count=$((records + 1)) "*) break ;; esac
done
echo "receiver: $(tail -n 1 "$work/receiver.log")"
retried=$(grep -c "attempt 1 failed" "$work/annald.log" || true)
echo "first attempts that failed (and were retried): $retried"
