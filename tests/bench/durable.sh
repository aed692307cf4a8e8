#!/usr/bin/env bash
# Runs one of the harness benchmarks (`queuebench`, `deploybench`, …) against a Postgres with
# production's durability settings (the defaults: `fsync`, `synchronous_commit` and
# `full_page_writes` on), instead of the tests' throwaway Postgres, which turns all three off.
#
# Usage: tests/bench/durable.sh <bench binary> [its arguments…]
#   e.g. tests/bench/durable.sh queuebench --prs 100
#
# The harness takes a server from DATABASE_URL when it is set (tests/src/pg.rs): this script starts
# one in .bench-durable/ (removed at the end, KEEP=1 keeps it) and points DATABASE_URL at it. It
# prints the server's settings first, so the output says what was measured.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${1:?usage: tests/bench/durable.sh <bench binary> [args…]}
shift
state="$root/.bench-durable"
port=${BENCH_PG_PORT:-54351}

. "$root/tests/bench/postgres.sh"

cleanup() {
  pg_stop
  [ -n "${KEEP:-}" ] || rm -rf "$state"
}
trap cleanup EXIT

(cd "$root" && cargo build -q --release -p bg-tests --bin "$bench")

rm -rf "$state" && mkdir -p "$state"
pg_start -c max_connections=500 -c shared_buffers=128MB
psql -h 127.0.0.1 -p "$port" -U postgres -Atc \
  "SELECT 'postgres ' || current_setting('server_version') || ': fsync=' || current_setting('fsync') \
   || ' synchronous_commit=' || current_setting('synchronous_commit') \
   || ' full_page_writes=' || current_setting('full_page_writes')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
  "${CARGO_TARGET_DIR:-$root/target}/release/$bench" "$@"
