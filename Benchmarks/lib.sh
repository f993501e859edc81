# What the benchmarks share: the release build, a work folder, a private Dovecot and the
# clean-up of all of them on exit. Sourced from the project root, not run.

# Installs the peers' packages, builds the release binary and sets GATEPOST to it.
bench_build() {
  scripts/install-test-deps >/dev/null
  swift build -c release --product gatepost >/dev/null
  GATEPOST=$(swift build -c release --show-bin-path)/gatepost
}

# WORK: a new folder under /tmp named PREFIX-..., readable by Dovecot's mail user (mailboxes
# live below it). Removed on exit, with whatever bench_on_exit (a script may redefine it) stops.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1-XXXXXX")
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
}

bench_on_exit() { :; }

INFO=""
# A field of the running Dovecot's description: field '["tlsPort"]'.
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$1)" "$INFO"; }

bench_cleanup() {
  bench_on_exit || true
  [[ -n $INFO ]] && kill "$(field '["pid"]')" 2>/dev/null
  rm -rf "$WORK"
}

# Starts a private Dovecot in DIR (stopped with this script, whatever ends it); INFO describes it.
# Further arguments go to start-dovecot.sh (--reuse-processes).
start_dovecot() {
  INFO=$(scripts/peers/start-dovecot.sh "$@" --stop-with $$)
}

# Starts a private PostgreSQL in DIR (fsync on, as in production; stopped with this script).
# bench_database NAME then creates a database and prints its catalog URL.
start_postgres() {
  PGINFO=$(scripts/peers/start-postgres.sh "$1" --stop-with $$)
  pgfield() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$PGINFO" "$1"; }
  PGBIN=$(pgfield bin); PGSOCKET=$(pgfield socketDirectory); PGPORT=$(pgfield port); PGUSER=$(pgfield user); PGPASSWORD=$(pgfield password)
}
bench_database() {
  bench_psql postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://$PGUSER:$PGPASSWORD@127.0.0.1:$PGPORT/$1?sslmode=disable"
}
# psql DATABASE ARGS... on the private server's socket.
bench_psql() {
  local database=$1; shift
  "$PGBIN/psql" -X -q -h "$PGSOCKET" -p "$PGPORT" -U "$PGUSER" -d "$database" "$@"
}
