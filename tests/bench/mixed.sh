#!/usr/bin/env bash
# Mixed load on both bots at once (issue 7, SPEC §9): Bobby's slash commands (lock, status, unlock,
# list), signed GitHub deliveries to Gandalf (issue comments with commands, reviews, pull request
# events) and `/gandalf` commands (queue, status), at increasing concurrency; latency percentiles,
# throughput and errors per endpoint and step, and each bot's resident memory (VmRSS, VmHWM).
#
# Usage: tests/bench/mixed.sh [steps=10,50,200] [seconds_per_step=15]
#
# Release build; a private Postgres in .bench-mixed/ (removed at the end, KEEP=1 keeps it); the real
# `bobby` and `gandalf` binaries as separate processes, with generated configs; the fake GitHub and
# fake Slack of the tests in a process of their own (`loadgen fakes`). Loopback only; every step is
# bounded in time (and in requests: MAX_REQUESTS per step). Gandalf's queue works for real meanwhile:
# each webhook sender queues one pull request per step (instant `true` steps, landing on the fake).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
steps=${1:-10,50,200}
seconds=${2:-15}
state="$root/.bench-mixed"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
port=${BENCH_PG_PORT:-54347}
bobby_addr=127.0.0.1:${BENCH_BOBBY_PORT:-8191}
gandalf_addr=127.0.0.1:${BENCH_GANDALF_PORT:-8192}
github_addr=127.0.0.1:${BENCH_GITHUB_PORT:-8194}
slack_addr=127.0.0.1:${BENCH_SLACK_PORT:-8195}
prs=50
max_clients=$(tr ',' '\n' <<<"$steps" | sort -n | tail -1)
export SLACK_SIGNING_SECRET=bench-secret GITHUB_WEBHOOK_SECRET=bench-webhook-secret

. "$root/tests/bench/postgres.sh"

cleanup() {
  for pid in ${bobby_pid:-} ${gandalf_pid:-} ${fakes_pid:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
  [ -n "${KEEP:-}" ] || rm -rf "$state"
}
trap cleanup EXIT

wait_for() { # url what
  for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$2 did not come up; its log:" >&2
  cat "$state/$2.log" >&2 || true
  exit 1
}

if [ -z "${NO_BUILD:-}" ]; then
  echo "building (release)…"
  (cd "$root" && cargo build -q --release --bin bobby --bin gandalf --bin loadgen)
fi

rm -rf "$state" && mkdir -p "$state"
pg_start -c max_connections=300 -c shared_buffers=256MB
psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bg"
database_url="postgres://postgres@127.0.0.1:$port/bg"

"$bin/loadgen" fakes --github "$github_addr" --slack "$slack_addr" --prs "$prs" >"$state/fakes.log" 2>&1 &
fakes_pid=$!
wait_for "http://$github_addr/" fakes
wait_for "http://$slack_addr/" fakes

# Both bots post to the fake Slack; Gandalf talks to the fake GitHub.
"$bin/loadgen" config --envs "$max_clients" --listen "$bobby_addr" >"$state/bobby.toml"
"$bin/loadgen" gandalf-config --listen "$gandalf_addr" >"$state/gandalf.toml"
common=(DATABASE_URL="$database_url" RUST_LOG=warn SLACK_API_URL="http://$slack_addr/api/" SLACK_BOT_TOKEN=xoxb-test-token)
env "${common[@]}" "$bin/bobby" --config "$state/bobby.toml" serve >"$state/bobby.log" 2>&1 &
bobby_pid=$!
wait_for "http://$bobby_addr/readyz" bobby
env "${common[@]}" GITHUB_API_URL="http://$github_addr" GITHUB_TOKEN=ghp-test-token \
  "$bin/gandalf" --config "$state/gandalf.toml" serve >"$state/gandalf.log" 2>&1 &
gandalf_pid=$!
wait_for "http://$gandalf_addr/readyz" gandalf
echo "idle: bobby $(awk '/VmRSS/ {print $2}' /proc/$bobby_pid/status) KiB, gandalf $(awk '/VmRSS/ {print $2}' /proc/$gandalf_pid/status) KiB resident"

"$bin/loadgen" mixed --bobby "http://$bobby_addr" --gandalf "http://$gandalf_addr" \
  --steps "$steps" --duration "${seconds}s" --max-requests "${MAX_REQUESTS:-300000}" --prs "$prs" \
  --slack "http://$slack_addr" --bobby-pid "$bobby_pid" --gandalf-pid "$gandalf_pid" | tee "$state/mixed.txt"

# What the load left behind. Deliveries are acknowledged once stored and processed from Postgres
# afterwards, so processing may trail the load: wait (at most DRAIN seconds) for the backlog to drain.
pg() { psql -h 127.0.0.1 -p "$port" -U postgres -d bg -qAtc "$1"; }
echo "deliveries when the load stopped: $(pg "SELECT count(*) || ' stored, ' || count(processed_at) || ' processed' FROM github_deliveries")"
drain_start=$(date +%s.%N)
for _ in $(seq 1 $((${DRAIN:-300} * 5))); do
  [ "$(pg "SELECT count(*) FROM github_deliveries WHERE processed_at IS NULL")" = 0 ] && break
  sleep 0.2
done
echo "deliveries after $(awk -v s="$drain_start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s more: $(pg "SELECT count(*) || ' stored, ' || count(processed_at) || ' processed' FROM github_deliveries")"
echo "resident memory after the drain: bobby VmRSS $(awk '/VmRSS/ {print $2}' /proc/$bobby_pid/status) KiB, VmHWM $(awk '/VmHWM/ {print $2}' /proc/$bobby_pid/status) KiB; gandalf VmRSS $(awk '/VmRSS/ {print $2}' /proc/$gandalf_pid/status) KiB, VmHWM $(awk '/VmHWM/ {print $2}' /proc/$gandalf_pid/status) KiB"
pg "SELECT 'queue items by state: ' || coalesce(string_agg(state || ' ' || n, ', '), 'none') FROM (SELECT state::text, count(*) n FROM queue_items GROUP BY 1 ORDER BY 1) s"
pg "SELECT 'leases left ' || count(*) FROM leases"
echo "errors in the bots' logs: bobby $(grep -c ERROR "$state/bobby.log" || true), gandalf $(grep -c ERROR "$state/gandalf.log" || true)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
