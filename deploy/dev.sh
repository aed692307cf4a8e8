#!/usr/bin/env bash
# Runs everything locally: a private Postgres in .dev/ and both bots with the example configs.
#
#   deploy/dev.sh up      build, start Postgres, Bobby and Gandalf, print where to look
#   deploy/dev.sh demo    the same bots on an embedded GitHub and Slack, and a scripted morning
#   deploy/dev.sh down    stop them (and the demo)
#   deploy/dev.sh status  what is running
#
# Postgres runs as an unprivileged user when this is run as root (Postgres refuses root), on
# 127.0.0.1:${DEV_PG_PORT:-54329}. Bobby listens on :8081, Gandalf on :8082 (DEV_BOBBY_PORT,
# DEV_GANDALF_PORT). Slack and GitHub are not configured: messages are logged, commands can be
# tried with `bobby exec`.
#
# `demo` starts the tests' fake GitHub (real git repositories under .dev/demo/github) and fake
# Slack on 127.0.0.1:${DEV_GITHUB_PORT:-8083} and :${DEV_SLACK_PORT:-8084} (loopback only: a
# development tool, which `serve` never starts), the bots against them on a fresh database
# (bobby_gandalf_demo) with deploy/demo/*.toml, and the `demo` driver (tests/src/bin/demo.rs):
# three pull requests through Gandalf's queue, a lock and a deploy, a Nightly delete and create of
# env-3. It prints what happens as it happens, then the control center's URL; GitHub and Slack keep
# running until `down`. Each run starts from scratch (.dev/demo and its database are recreated).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.dev"
pg_port=${DEV_PG_PORT:-54329}
bobby_port=${DEV_BOBBY_PORT:-8081}
gandalf_port=${DEV_GANDALF_PORT:-8082}
database_url="postgres://postgres@127.0.0.1:$pg_port/bobby_gandalf"
api_token=${BOBBY_API_TOKEN:-dev-token}
github_port=${DEV_GITHUB_PORT:-8083}
slack_port=${DEV_SLACK_PORT:-8084}
demo_db=bobby_gandalf_demo

find_pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  [ -x "$d/initdb" ] && { echo "$d"; return; }
  return 1
}

# Runs a Postgres binary as the server's user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

pg_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
  pg_user=postgres
  id postgres >/dev/null 2>&1 || pg_user=nobody
fi

start_pg() {
  local bindir
  if ! bindir=$(find_pg_bindir); then
    echo "PostgreSQL's server binaries were not found. Install them (Debian/Ubuntu: apt-get install postgresql) and run this again." >&2
    exit 1
  fi
  mkdir -p "$state"
  if [ ! -d "$state/pg/data" ]; then
    mkdir -p "$state/pg"
    [ "$(id -u)" = 0 ] && chown "$pg_user" "$state/pg"
    echo "creating a private Postgres cluster in $state/pg/data"
    as_pg "$bindir/initdb" -D "$state/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >"$state/initdb.log"
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$state/pg/data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$state/pg/data" -l "$state/pg/postgres.log" -w \
      -o "-h 127.0.0.1 -p $pg_port -k $state/pg" start >/dev/null
  fi
  if ! psql -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'bobby_gandalf'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE bobby_gandalf" >/dev/null
  fi
}

stop_pid() {
  local file="$state/$1.pid"
  if [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null; then
    kill "$(cat "$file")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$file")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$file"
}

wait_ready() {
  local url=$1 name=$2
  for _ in $(seq 1 100); do
    if curl -fsS "$url/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not become ready; see $state/$name.log" >&2
  tail -20 "$state/$name.log" >&2
  return 1
}

# The example configs are the container's: steps run as the image's `step` user and state lives in
# /var/lib/<bot>. Here steps run as you and state lives in .dev/: a copy of each config without
# `step_user`, with `state_dir` in .dev/ and the Nightly step paths made absolute (the copy is not
# next to deploy/ops).
dev_config() {
  sed -e '/^step_user = /d' \
      -e "s|^state_dir = .*|state_dir = \"$state/$1-state\"|" \
      -e "s|^run = \"ops/|run = \"$root/deploy/ops/|" \
      "$root/deploy/$1.example.toml" >"$state/$1.toml"
}

up() {
  start_pg
  dev_config bobby
  dev_config gandalf
  echo "building the bots (cargo build)…"
  (cd "$root" && cargo build -q --bin bobby --bin gandalf)
  stop_pid demo
  stop_pid bobby
  stop_pid gandalf
  export DATABASE_URL="$database_url" BOBBY_API_TOKEN="$api_token"
  cd "$root"
  nohup target/debug/bobby --config "$state/bobby.toml" serve --listen "127.0.0.1:$bobby_port" \
    </dev/null >"$state/bobby.log" 2>&1 &
  echo $! >"$state/bobby.pid"
  wait_ready "http://127.0.0.1:$bobby_port" bobby
  nohup target/debug/gandalf --config "$state/gandalf.toml" serve --listen "127.0.0.1:$gandalf_port" \
    </dev/null >"$state/gandalf.log" 2>&1 &
  echo $! >"$state/gandalf.pid"
  wait_ready "http://127.0.0.1:$gandalf_port" gandalf
  cat <<MSG

Everything is up. The control center (every environment, queue and run) is on both bots' /.
  Bobby     http://127.0.0.1:$bobby_port/          (environments: http://127.0.0.1:$bobby_port/api/v1/environments)
  Gandalf   http://127.0.0.1:$gandalf_port/         (health: http://127.0.0.1:$gandalf_port/readyz)
  Postgres  $database_url
  Logs      $state/bobby.log, $state/gandalf.log

Try a command without Slack:
  DATABASE_URL=$database_url target/debug/bobby --config $state/bobby.toml exec --as U0ALICE "lock env-1 for 2h demo"
  BOBBY_API_TOKEN=$api_token target/debug/bobby deploy-check env-1 --as alice --url http://127.0.0.1:$bobby_port

Stop everything with: deploy/dev.sh down
MSG
}

# The demo's configs: deploy/demo/*.toml with their placeholders filled in.
demo_config() {
  sed -e "s|@DEMO@|$state/demo|g" -e "s|@BOBBY_PORT@|$bobby_port|g" -e "s|@GANDALF_PORT@|$gandalf_port|g" \
    "$root/deploy/demo/$1.toml" >"$state/demo/$1.toml"
}

# Waits until the demo driver has printed `line` (a prefix) or has exited.
wait_for_line() {
  local prefix=$1
  for _ in $(seq 1 600); do
    grep -q "^$prefix" "$state/demo.log" 2>/dev/null && return 0
    kill -0 "$(cat "$state/demo.pid")" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

demo() {
  local started=$SECONDS
  start_pg
  stop_pid demo
  stop_pid bobby
  stop_pid gandalf
  # From scratch every time: the embedded GitHub keeps pull requests in memory, so its
  # repositories, the bots' mirrors and the database's queue must start empty together.
  rm -rf "$state/demo"
  mkdir -p "$state/demo"
  PGOPTIONS="-c client_min_messages=warning" \
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "DROP DATABASE IF EXISTS $demo_db WITH (FORCE)" >/dev/null
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE $demo_db" >/dev/null
  demo_config bobby
  demo_config gandalf
  echo "building the bots and the demo (cargo build)…"
  (cd "$root" && cargo build -q --bin bobby --bin gandalf && cargo build -q -p bg-tests --bin demo)
  cd "$root"
  # The secrets the bots read; the tokens are the embedded GitHub's and Slack's own.
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$demo_db" BOBBY_API_TOKEN="$api_token" \
    GITHUB_API_URL="http://127.0.0.1:$github_port" GITHUB_TOKEN=ghp-test-token \
    GITHUB_WEBHOOK_SECRET=demo-webhook-secret \
    SLACK_API_URL="http://127.0.0.1:$slack_port/api/" SLACK_BOT_TOKEN=xoxb-test-token \
    SLACK_SIGNING_SECRET=demo-signing-secret
  nohup target/debug/demo --monorepo "$root/deploy/demo/monorepo" \
    --github-dir "$state/demo/github" --github-listen "127.0.0.1:$github_port" \
    --slack-listen "127.0.0.1:$slack_port" --slack-log "$state/demo/slack.log" \
    --environments "$state/demo/environments" \
    --bobby-url "http://127.0.0.1:$bobby_port" --gandalf-url "http://127.0.0.1:$gandalf_port" \
    </dev/null >"$state/demo.log" 2>&1 &
  echo $! >"$state/demo.pid"
  if ! wait_for_line slack; then
    echo "the demo's GitHub and Slack did not start; see $state/demo.log" >&2
    tail -20 "$state/demo.log" >&2
    exit 1
  fi
  nohup target/debug/bobby --config "$state/demo/bobby.toml" serve --listen "127.0.0.1:$bobby_port" \
    </dev/null >"$state/bobby.log" 2>&1 &
  echo $! >"$state/bobby.pid"
  nohup target/debug/gandalf --config "$state/demo/gandalf.toml" serve --listen "127.0.0.1:$gandalf_port" \
    </dev/null >"$state/gandalf.log" 2>&1 &
  echo $! >"$state/gandalf.pid"
  # The driver's story, as it happens, until it says it is done.
  tail -n +1 -f "$state/demo.log" &
  local tail_pid=$!
  local ok=0
  wait_for_line "demo finished" || ok=1
  sleep 0.2
  kill "$tail_pid" 2>/dev/null || true
  wait "$tail_pid" 2>/dev/null || true
  if [ "$ok" != 0 ]; then
    echo "the demo stopped before the end; see $state/demo.log, $state/bobby.log, $state/gandalf.log" >&2
    exit 1
  fi
  cat <<MSG

The demo took $((SECONDS - started)) s. Everything keeps running until: deploy/dev.sh down
  Logs          $state/demo.log (this story), $state/bobby.log, $state/gandalf.log
  Slack         $state/demo/slack.log (every message the bots sent)
  Environments  $state/demo/environments/<env>/<service>/ (what the pipeline "deployed")
  Try more      DATABASE_URL=$DATABASE_URL target/debug/gandalf --config $state/demo/gandalf.toml exec --as U0ALICE "queue"
MSG
}

down() {
  stop_pid demo
  stop_pid bobby
  stop_pid gandalf
  local bindir
  if [ -d "$state/pg/data" ] && bindir=$(find_pg_bindir); then
    as_pg "$bindir/pg_ctl" -D "$state/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  echo "stopped"
}

status() {
  for b in bobby gandalf demo; do
    if [ -f "$state/$b.pid" ] && kill -0 "$(cat "$state/$b.pid")" 2>/dev/null; then
      echo "$b: running (pid $(cat "$state/$b.pid"))"
    else
      echo "$b: stopped"
    fi
  done
}

case "${1:-up}" in
  up) up ;;
  demo) demo ;;
  down) down ;;
  status) status ;;
  *) echo "usage: deploy/dev.sh [up|demo|down|status]" >&2; exit 2 ;;
esac
