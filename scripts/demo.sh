#!/usr/bin/env bash
# Runs the demo's processes (`make demo` passes the honcho command line) and stops them all on
# Ctrl-C or SIGTERM (what docker and systemd send), exiting 0 so that make reports no error.
# honcho runs in the background so that this shell can take the signal: it forwards SIGTERM to
# honcho, which stops every process of the Procfile, and waits for it, at most STOP_SECONDS.
set -u
STOP_SECONDS=${STOP_SECONDS:-8}

stop() {
  trap - INT TERM
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq $((STOP_SECONDS * 10))); do
    kill -0 "$pid" 2>/dev/null || exit 0
    sleep 0.1
  done
  echo "demo: processes still running after ${STOP_SECONDS}s; killing them" >&2
  pkill -KILL -P "$pid" 2>/dev/null
  kill -KILL "$pid" 2>/dev/null
  exit 0
}
trap stop INT TERM

"$@" &
pid=$!
wait "$pid"
status=$?
# wait returns early (status > 128) when a trapped signal arrives; stop() then exits by itself.
exit "$status"
