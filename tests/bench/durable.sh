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

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] || bindir=$(pg_config --bindir)
pg_user=$(id -un)
if [ "$(id -u)" = 0 ]; then pg_user=postgres; id postgres >/dev/null 2>&1 || pg_user=nobody; fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }

cleanup() {
  as_pg "$bindir/pg_ctl" -D "$state/data" -m fast stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$state"
}
trap cleanup EXIT

(cd "$root" && cargo build -q --release -p bg-tests --bin "$bench")

rm -rf "$state" && mkdir -p "$state"
[ "$(id -u)" = 0 ] && chown "$pg_user" "$state"
as_pg "$bindir/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w \
  -o "-h 127.0.0.1 -p $port -k $state -c max_connections=500 -c shared_buffers=128MB" start >/dev/null
psql -h 127.0.0.1 -p "$port" -U postgres -Atc \
  "SELECT 'postgres ' || current_setting('server_version') || ': fsync=' || current_setting('fsync') \
   || ' synchronous_commit=' || current_setting('synchronous_commit') \
   || ' full_page_writes=' || current_setting('full_page_writes')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
  "${CARGO_TARGET_DIR:-$root/target}/release/$bench" "$@"
