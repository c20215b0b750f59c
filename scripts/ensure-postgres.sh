#!/usr/bin/env bash
# Makes a PostgreSQL server available at 127.0.0.1:5432 with a database `test` for the tests, and
# prints its URL (the only line on stdout; progress goes to stderr):
#   export KMSD_TEST_POSTGRES_URL="$(scripts/ensure-postgres.sh)"
# When a server already answers there, this only checks that it can log in and that `test` exists.
# Otherwise (a fresh Debian machine, as root or with passwordless sudo) it installs Debian's
# postgresql, starts its cluster, and, if the server refuses the password-less login, gives the
# role `postgres` the fixed test password below. Running it again changes nothing.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
DATABASE=test
# Only ever set on a cluster that refused every other login, i.e. one this script just installed.
TEST_PASSWORD=kmsd-test

say() { echo "ensure-postgres: $*" >&2; }
die() { say "$*"; exit 1; }

# Runs a command as root (apt-get) or as the cluster's owner (peer login over the Unix socket).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi; }

ready() { command -v pg_isready >/dev/null && pg_isready -q -h "$HOST" -p "$PORT"; }
can_login() { PGCONNECT_TIMEOUT=5 psql "$1" -AtqX -c 'SELECT 1' >/dev/null 2>&1; }
# The newest installed server (not only a client) version, e.g. 15; empty when there is none.
server_version() {
  ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed 's#^/usr/lib/postgresql/\([^/]*\)/.*#\1#' | sort -V | tail -n 1 || true
}

if ! ready; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(server_version)" ]; then
    say "installing postgresql from Debian"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  version="$(server_version)"
  [ -n "$version" ] || die "no PostgreSQL server is installed under /usr/lib/postgresql"
  # The package creates the cluster `main` unless postgresql-common is told not to.
  if [ ! -d "/etc/postgresql/$version/main" ]; then
    say "creating cluster $version/main"
    as_root pg_createcluster --port "$PORT" "$version" main >&2
  fi
  say "starting cluster $version/main"
  # Without systemd (containers, CI) pg_ctlcluster must start the server itself. "Already running"
  # (exit 2) is fine: it may be starting up but not accepting connections yet.
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || [ $? = 2 ]
  for _ in $(seq 1 60); do ready && break; sleep 0.5; done
  ready || die "PostgreSQL $version/main did not start accepting connections on $HOST:$PORT"
fi

# Trust (as on a developer machine or this CI image) or the test password of an earlier run.
base="postgres://postgres@$HOST:$PORT"
if ! can_login "$base/postgres"; then
  base="postgres://postgres:$TEST_PASSWORD@$HOST:$PORT"
  if ! can_login "$base/postgres"; then
    say "the server refuses user postgres over TCP: setting its test password"
    as_postgres psql -qX -c "ALTER ROLE postgres PASSWORD '$TEST_PASSWORD'" >&2 ||
      die "cannot log in to PostgreSQL at $HOST:$PORT as postgres, nor set its password (run as root?)"
    can_login "$base/postgres" || die "PostgreSQL at $HOST:$PORT refuses user postgres even with the test password (see pg_hba.conf)"
  fi
fi

if [ "$(psql "$base/postgres" -AtqX -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
  say "creating database $DATABASE"
  # Two runs racing here is harmless: the loser fails with "already exists" and checks again.
  psql "$base/postgres" -qX -c "CREATE DATABASE $DATABASE" >&2 ||
    [ "$(psql "$base/postgres" -AtqX -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" = 1 ]
fi

echo "$base/$DATABASE"
