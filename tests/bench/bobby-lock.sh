#!/usr/bin/env bash
# Benchmarks Bobby's lock path against pgbench on the same Postgres (SPEC §9):
#   - /bobby lock round trip at 200 concurrent clients (p50/p99/p999),
#   - lock+unlock throughput versus pgbench simple-update TPS at the same concurrency,
#   - 1,000 concurrent locks of one environment (exactly one winner),
#   - Bobby's resident memory under that load.
# Usage: tests/bench/bobby-lock.sh [clients] [seconds]      (defaults 200 and 20)
# Everything runs on loopback; Postgres lives in .bench/ and is stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
clients=${1:-200}
seconds=${2:-20}
state="$root/.bench"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
port=${BENCH_PG_PORT:-54339}
bobby_addr=127.0.0.1:${BENCH_BOBBY_PORT:-8091}
export SLACK_SIGNING_SECRET=bench-secret

. "$root/tests/bench/postgres.sh"

cleanup() {
  [ -n "${bobby_pid:-}" ] && kill "$bobby_pid" 2>/dev/null || true
  pg_stop
}
trap cleanup EXIT

echo "building (release)…"
(cd "$root" && cargo build -q --release --bin bobby --bin loadgen)

rm -rf "$state" && mkdir -p "$state"
pg_start -c max_connections=500 -c shared_buffers=256MB
psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bobby" -c "CREATE DATABASE pgbench"

"$bin/loadgen" config --envs "$clients" --listen "$bobby_addr" >"$state/bobby.toml"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/bobby" RUST_LOG=warn \
  "$bin/bobby" --config "$state/bobby.toml" serve >"$state/bobby.log" 2>&1 &
bobby_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$bobby_addr/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== Bobby lock/unlock, $clients clients, ${seconds}s, as fast as answers come (ceiling)"
"$bin/loadgen" lock-unlock --url "http://$bobby_addr" --clients "$clients" --duration "${seconds}s" | tee "$state/load.txt"
for rate in ${RATES:-200 500 1000}; do
  echo "== Bobby lock/unlock, $clients clients, open loop at $rate commands/s"
  "$bin/loadgen" lock-unlock --url "http://$bobby_addr" --clients "$clients" --duration "${seconds}s" --rate "$rate" | grep -E "lock round trip|throughput"
done
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$bobby_pid/status")

echo "== 1000 concurrent locks of one environment"
"$bin/loadgen" stampede --url "http://$bobby_addr" --clients 1000 --env load-1 | tee "$state/stampede.txt"
rss_after_kb=$(awk '/VmHWM/ {print $2}' "/proc/$bobby_pid/status")

echo "== pgbench simple-update, $clients clients, ${seconds}s"
pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 10 -q pgbench >/dev/null 2>&1
pgbench -h 127.0.0.1 -p "$port" -U postgres -N -c "$clients" -j 2 -T "$seconds" pgbench 2>/dev/null | tee "$state/pgbench.txt" | grep -E "^tps|latency average"

bobby_tps=$(sed -n 's/^RESULT commands_per_sec=\([0-9]*\).*/\1/p' "$state/load.txt")
pg_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$state/pgbench.txt" | head -1)
echo
echo "== summary"
echo "Bobby lock+unlock: $bobby_tps commands/s (each command is one database transaction)"
echo "pgbench -N:        $pg_tps tps"
awk -v b="$bobby_tps" -v p="$pg_tps" 'BEGIN { printf "ratio:             %.0f %% of pgbench\n", 100 * b / p }'
echo "Bobby peak RSS:    $((rss_kb / 1024)) MiB under lock/unlock load, $((rss_after_kb / 1024)) MiB after the stampede"
echo "machine:           $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
