#!/usr/bin/env bash
# Benchmarks a Nightly morning (issue 5): 20 environments × 7 create steps, with throttling (exit 75)
# injected at a given share of all attempts, through the real `bobby nightly run create` (release
# build, private Postgres, real child processes, wall clock and real backoff sleeps).
#
# Usage: tests/bench/nightly.sh [envs=20] [steps=7] [throttle_percent=30] [runs=3]
#   RETRY='{ attempts = 5, initial_backoff = "2s", max_backoff = "2m" }'   the retry policy (default:
#                                                                          the example config's)
#   CONCURRENCY=4  STEP_WORK=0   (seconds each step sleeps before deciding; 0 = instant steps)
#
# Each run first deletes everything (no delete steps: instant), then times the create, then reads
# attempts, throttles, faults and the time spent in backoff back from Postgres. Everything runs on
# loopback; Postgres lives in .bench-nightly/, stopped and removed at the end (KEEP=1 keeps it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
envs=${1:-20}
steps=${2:-7}
throttle=${3:-30}
runs=${4:-3}
retry=${RETRY:-'{ attempts = 5, initial_backoff = "2s", max_backoff = "2m" }'}
concurrency=${CONCURRENCY:-4}
work=${STEP_WORK:-0}
state="$root/.bench-nightly"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
port=${BENCH_PG_PORT:-54341}

. "$root/tests/bench/postgres.sh"
psql_q() { psql -h 127.0.0.1 -p "$port" -U postgres -d bobby -qAtc "$1"; }

cleanup() {
  pg_stop
  [ -n "${KEEP:-}" ] || rm -rf "$state"
}
trap cleanup EXIT

echo "building (release)…"
(cd "$root" && cargo build -q --release --bin bobby)

rm -rf "$state" && mkdir -p "$state/ops"
pg_start   # $state is absolute: the socket lives there
psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bobby"

# A step that is throttled on $throttle % of its attempts, decided independently per attempt.
cat >"$state/ops/step.sh" <<EOF
#!/bin/sh
[ "$work" != 0 ] && sleep $work
r=\$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
if [ \$((r % 100)) -lt $throttle ]; then echo "\$BOBBY_STEP on \$BOBBY_ENV: throttled (attempt \$BOBBY_ATTEMPT)"; exit 75; fi
echo "\$BOBBY_STEP on \$BOBBY_ENV: done (attempt \$BOBBY_ATTEMPT)"
EOF
chmod +x "$state/ops/step.sh"

{
  cat <<EOF
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8081"
timezone = "Europe/Berlin"
admins = ["U0ADMIN1"]
announce_channel = "C0ENVS"
EOF
  for i in $(seq 1 "$envs"); do
    printf '\n[[environments]]\nname = "env-%s"\nurl = "https://env-%s.dev.example.com"\n' "$i" "$i"
  done
  cat <<EOF

[nightly]
delete_at = "20:00"
create_at = "06:30"
workdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
concurrency = $concurrency
step_timeout = "5m"
retry = $retry
EOF
  for s in infrastructure build deploy migrate seed-data enable-jobs e2e; do
    printf '\n[[nightly.create]]\nname = "%s"\nrun = "ops/step.sh"\n' "$s"
  done | head -n $((steps * 4))
} >"$state/bobby.toml"

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/bobby" RUST_LOG=warn
unset SLACK_BOT_TOKEN SLACK_SIGNING_SECRET BOBBY_API_TOKEN
echo "== $envs environments × $steps steps, throttled on $throttle % of attempts, concurrency $concurrency, retry $retry"
for run in $(seq 1 "$runs"); do
  "$bin/bobby" --config "$state/bobby.toml" nightly run delete >/dev/null
  start=$(date +%s.%N)
  set +e
  "$bin/bobby" --config "$state/bobby.toml" nightly run create >"$state/create-$run.txt"
  code=$?
  set -e
  end=$(date +%s.%N)
  id=$(psql_q "SELECT max(id) FROM nightly_runs WHERE phase = 'create'")
  stats=$(psql_q "SELECT count(*), count(*) FILTER (WHERE exit_code = 75), coalesce(sum(backoff_ms), 0) FROM nightly_attempts WHERE run_id = $id")
  faults=$(psql_q "SELECT count(*) FROM nightly_run_envs WHERE run_id = $id AND state = 'faulted'")
  IFS='|' read -r attempts throttled backoff_ms <<<"$stats"
  awk -v s="$start" -v e="$end" -v a="$attempts" -v t="$throttled" -v b="$backoff_ms" -v f="$faults" -v c="$code" -v r="$run" \
    -v envs="$envs" -v steps="$steps" -v conc="$concurrency" 'BEGIN {
      wall = e - s
      printf "run %d: %.1f s wall · %d attempts (%d throttled = %.0f %%) · %d faulted · exit %d · %.1f s of backoff slept in total, %.1f s per slot\n",
        r, wall, a, t, 100 * t / a, f, c, b / 1000, b / 1000 / conc
    }'
done
echo
echo "== the last run's summary as posted to announce_channel (Slack mrkdwn, from the outbox)"
psql_q "SELECT text FROM slack_outbox WHERE channel = 'C0ENVS' ORDER BY id DESC LIMIT 1"
echo
echo "== what \`bobby nightly run create\` printed for it"
cat "$state/create-$runs.txt"
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
