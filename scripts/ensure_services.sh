#!/usr/bin/env bash
# Make sure the services the test suite needs are up on this machine: PostgreSQL and Redis on
# localhost, and a Python that can create virtual environments. Each step checks first and only
# acts when something is missing, so running this twice is safe (and cheap).
#
# PostgreSQL is only touched when DATABASE_URL is unset or points at this machine, and Redis only
# when REDIS_URL / CELERY_BROKER_URL are unset or point at this machine: a remote service is the
# caller's business, not ours.
set -euo pipefail

log() { echo "[ensure_services] $*"; }

# Root needs nothing; otherwise use sudo when it exists (non-interactive: CI has no stdin).
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    log "not root and no sudo: installing or starting system services may fail"
  fi
fi

# apt-get update runs at most once per run, and only when something must be installed.
APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get is not available; install these by hand: $*"
    return 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# Print the host of a URL such as postgres://user:pw@host:5432/db (empty when the URL has none).
url_host() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  if [[ "$rest" == \[* ]]; then
    rest="${rest#[}"
    echo "${rest%%]*}"
  else
    echo "${rest%%:*}"
  fi
}

# Print the port of a URL, or the given default.
url_port() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  rest="${rest##*]}"
  if [[ "$rest" == *:* ]]; then
    echo "${rest##*:}"
  else
    echo "$2"
  fi
}

is_local_host() {
  case "$1" in
    "" | 127.0.0.1 | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

wait_for() {
  # wait_for <what> <seconds> <command...>: poll once a second, fail after the bound.
  local what="$1" seconds="$2"
  shift 2
  local i
  for ((i = 0; i < seconds; i++)); do
    if "$@" >/dev/null 2>&1; then
      log "$what is ready"
      return 0
    fi
    sleep 1
  done
  log "$what did not become ready within ${seconds}s"
  return 1
}

# --- PostgreSQL -------------------------------------------------------------------------------

PG_HOST=127.0.0.1
PG_PORT=5432
# The Debian cluster to start when the server is installed but stopped.
PG_CLUSTER="${CLOAKROOM_PG_CLUSTER:-main}"
# The concurrency tests open a hundred simultaneous connections; PostgreSQL's default is 100.
PG_MAX_CONNECTIONS="${CLOAKROOM_PG_MAX_CONNECTIONS:-300}"
PG_STARTED_HERE=0
PG_WANTED=1
if [ -n "${DATABASE_URL:-}" ]; then
  case "$DATABASE_URL" in
    postgres://* | postgresql://* | pgsql://* | postgis://*)
      PG_PORT="$(url_port "$DATABASE_URL" 5432)"
      if ! is_local_host "$(url_host "$DATABASE_URL")"; then
        log "DATABASE_URL points at another host; leaving PostgreSQL alone"
        PG_WANTED=0
      fi
      ;;
    *)
      log "DATABASE_URL is not PostgreSQL; leaving PostgreSQL alone"
      PG_WANTED=0
      ;;
  esac
fi

pg_ready() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

pg_version() {
  # The newest installed major version, or nothing (and success) when none is installed.
  [ -d /etc/postgresql ] || return 0
  find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1
}

pg_can_login() {
  # The suite connects over TCP as user postgres without a password, like this machine allows.
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atc "select 1" >/dev/null 2>&1
}

ensure_pg_trust() {
  local version hba
  version="$(pg_version)"
  hba="/etc/postgresql/$version/$PG_CLUSTER/pg_hba.conf"
  if pg_can_login; then
    log "PostgreSQL accepts user postgres over TCP"
    return 0
  fi
  if [ -z "$version" ] || [ ! -f "$hba" ]; then
    log "cannot log in as postgres over TCP and no local pg_hba.conf to fix"
    return 1
  fi
  # pg_hba.conf is read top to bottom and the first match wins, so the trust lines go first.
  log "allowing passwordless TCP logins for user postgres from localhost in $hba"
  local tmp
  tmp="$(mktemp)"
  {
    echo "# Added by scripts/ensure_services.sh for local development and tests."
    echo "host    all    postgres    127.0.0.1/32    trust"
    echo "host    all    postgres    ::1/128         trust"
    "${SUDO[@]}" cat "$hba"
  } >"$tmp"
  "${SUDO[@]}" cp "$tmp" "$hba"
  rm -f "$tmp"
  "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" reload
  wait_for "PostgreSQL login as postgres" 30 pg_can_login
}

pg_max_connections() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atc "show max_connections" 2>/dev/null
}

write_pg_connection_limit() {
  # A conf.d file (Debian's postgresql.conf includes the folder) takes effect at the next start;
  # writing it does not disturb a running server.
  local conf_dir="/etc/postgresql/$1/$PG_CLUSTER/conf.d"
  local file="$conf_dir/95-cloakroom.conf"
  local wanted="max_connections = $PG_MAX_CONNECTIONS"
  [ -d "$conf_dir" ] || return 0
  if [ "$("${SUDO[@]}" cat "$file" 2>/dev/null || true)" != "$wanted" ]; then
    log "setting $wanted in $file"
    echo "$wanted" | "${SUDO[@]}" tee "$file" >/dev/null
  fi
}

ensure_pg_connection_limit() {
  local version current
  version="$(pg_version)"
  current="$(pg_max_connections || true)"
  if [ -z "$current" ] || [ "$current" -ge "$PG_MAX_CONNECTIONS" ]; then
    [ -z "$current" ] || log "PostgreSQL allows $current connections"
    return 0
  fi
  if [ -z "$version" ]; then
    log "PostgreSQL allows only $current connections and is not a local Debian cluster; the concurrency tests need $PG_MAX_CONNECTIONS"
    return 0
  fi
  write_pg_connection_limit "$version"
  # A restart drops every client's connection, so it only happens on a machine that is ours
  # alone: one this run started the server on, or CI (a fresh machine per run).
  if [ "$PG_STARTED_HERE" -eq 1 ] || [ "${CI:-}" = "true" ]; then
    log "restarting PostgreSQL $version/$PG_CLUSTER to allow $PG_MAX_CONNECTIONS connections"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" restart
    wait_for "PostgreSQL" 60 pg_ready
  else
    log "PostgreSQL allows only $current connections; the concurrency tests need $PG_MAX_CONNECTIONS."
    log "Not restarting a server other programs may be using. To apply the new limit, run:"
    log "  pg_ctlcluster --skip-systemctl-redirect $version $PG_CLUSTER restart"
  fi
}

if [ "$PG_WANTED" -eq 1 ]; then
  if pg_ready; then
    log "PostgreSQL is already accepting connections on $PG_HOST:$PG_PORT"
  else
    if [ -z "$(pg_version)" ]; then
      log "PostgreSQL is not installed"
      apt_install postgresql
    fi
    version="$(pg_version)"
    if [ -z "$version" ]; then
      log "PostgreSQL installation left no cluster under /etc/postgresql"
      exit 1
    fi
    if [ ! -d "/etc/postgresql/$version/$PG_CLUSTER" ]; then
      log "creating cluster $version/$PG_CLUSTER on port $PG_PORT"
      "${SUDO[@]}" pg_createcluster --port "$PG_PORT" "$version" "$PG_CLUSTER"
    fi
    write_pg_connection_limit "$version"
    log "starting PostgreSQL $version/$PG_CLUSTER"
    # An already-running cluster on another port makes start fail; the readiness wait decides.
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start || true
    wait_for "PostgreSQL" 60 pg_ready
    PG_STARTED_HERE=1
  fi
  if command -v psql >/dev/null 2>&1; then
    ensure_pg_trust
    ensure_pg_connection_limit
  fi
fi

# --- Redis ------------------------------------------------------------------------------------

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_WANTED=1
for var in REDIS_URL CELERY_BROKER_URL; do
  value="${!var:-}"
  [ -n "$value" ] || continue
  case "$value" in
    redis://* | rediss://*)
      if is_local_host "$(url_host "$value")"; then
        REDIS_PORT="$(url_port "$value" 6379)"
      else
        log "$var points at another host; leaving Redis alone"
        REDIS_WANTED=0
      fi
      ;;
  esac
done

redis_ready() {
  command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

if [ "$REDIS_WANTED" -eq 1 ]; then
  if redis_ready; then
    log "Redis is already answering on $REDIS_HOST:$REDIS_PORT"
  else
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
      log "Redis is not installed"
      apt_install redis-server
    fi
    if redis_ready; then
      # Debian's package may start its own service on install.
      log "Redis is answering on $REDIS_HOST:$REDIS_PORT"
    else
      log "starting redis-server on $REDIS_HOST:$REDIS_PORT (no persistence: it only carries test messages)"
      redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no
      wait_for "Redis" 30 redis_ready
    fi
  fi
fi

# --- Python virtual environments ---------------------------------------------------------------

venv_works() {
  local dir
  dir="$(mktemp -d)"
  if python3 -m venv "$dir/venv" >/dev/null 2>&1; then
    rm -rf "$dir"
    return 0
  fi
  rm -rf "$dir"
  return 1
}

if ! command -v python3 >/dev/null 2>&1; then
  log "python3 is not installed"
  apt_install python3 python3-venv
fi
if venv_works; then
  log "python3 -m venv works ($(python3 --version 2>&1))"
else
  # Debian splits venv's pip bootstrap into python3-venv (and python3.X-venv).
  minor="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  apt_install python3-venv "python${minor}-venv" || apt_install python3-venv
  if ! venv_works; then
    log "python3 -m venv still fails after installing python3-venv"
    exit 1
  fi
  log "python3 -m venv works"
fi

log "all services ready"
