# Sourced by the benchmark scripts: a private Postgres for one run, its cluster in "$state/data",
# listening on 127.0.0.1:"$port" and a socket in "$state" (the caller sets both; "$state" must be an
# absolute path that exists). Postgres's default durability (`fsync`, `synchronous_commit`,
# `full_page_writes` on), as production runs, unless the caller's options say otherwise. As root,
# Postgres runs as `postgres` (or `nobody`), which it requires.

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] || bindir=$(pg_config --bindir)
pg_user=$(id -un)
if [ "$(id -u)" = 0 ]; then pg_user=postgres; id postgres >/dev/null 2>&1 || pg_user=nobody; fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }

# pg_start [-c name=value …]: a fresh cluster in "$state", started, with these server options.
pg_start() {
  if [ "$(id -u)" = 0 ]; then chown "$pg_user" "$state"; fi
  as_pg "$bindir/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_pg "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w \
    -o "-h 127.0.0.1 -p $port -k $state $*" start >/dev/null
}

# pg_stop: stops it if it runs (for an EXIT trap).
pg_stop() {
  as_pg "$bindir/pg_ctl" -D "$state/data" -m fast stop >/dev/null 2>&1 || true
}
