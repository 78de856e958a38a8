#!/usr/bin/env bash
# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
# Install it with apt-get when it is missing (CI starts from a fresh machine).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "installing Debian chromium for the browser tests" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
for _ in 1 2 3 4 5 6; do  # another apt may hold the lock for a while
  if $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; then break; fi
  $SUDO apt-get update -q >/dev/null || true
  sleep 10
done
if [ ! -x /usr/bin/chromium ]; then
  echo "FATAL: /usr/bin/chromium is missing and apt-get could not install it" >&2
  exit 1
fi
