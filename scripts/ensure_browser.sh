#!/usr/bin/env bash
# Make sure the browser the browser tests (tests/e2e) drive is installed: Debian's Chromium at
# /usr/bin/chromium. Playwright's own browser download is not used (it needs a host this project
# does not rely on); Playwright drives the system Chromium through executable_path instead.
# Checks first and only acts when the browser is missing, so running this twice is safe and cheap.
set -euo pipefail

log() { echo "[ensure_browser] $*"; }

CHROMIUM="${CLOAKROOM_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  log "Chromium is installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi

if [ "$CHROMIUM" != /usr/bin/chromium ]; then
  log "CLOAKROOM_CHROMIUM=$CHROMIUM is not an executable file; install it or unset the variable"
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "Chromium is missing and apt-get is not available: install Chromium so that /usr/bin/chromium exists"
  exit 1
fi

# Root needs nothing; otherwise use sudo, non-interactively (CI has no standard input).
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    log "not root and no sudo: cannot install Chromium; run 'apt-get install -y chromium' as root"
    exit 1
  fi
fi

log "Chromium is missing; apt-get update"
"${SUDO[@]}" apt-get update
log "apt-get install chromium"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

if [ ! -x "$CHROMIUM" ]; then
  log "apt-get finished but $CHROMIUM is still missing"
  exit 1
fi
log "Chromium is installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
