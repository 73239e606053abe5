#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright's own download does not work here).
# Installs it when missing and we can (root); otherwise says how.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
else
  echo "Browser tests need Chromium at /usr/bin/chromium: sudo apt-get install chromium" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi
exit 0
