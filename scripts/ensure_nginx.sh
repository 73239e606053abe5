#!/usr/bin/env bash
# The production browser test runs nginx with deploy/nginx/kendis-integration.conf in front of gunicorn.
# Installs Debian's nginx when missing and we can (root); otherwise says how. Its service is not started:
# the test runs its own nginx on free ports.
set -euo pipefail
if [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's nginx for the production browser test..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package would start nginx on port 80, which nothing here needs: a policy-rc.d of our own (only when
  # the machine has none) tells it not to, and goes afterwards.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq nginx >/dev/null
else
  echo "The production browser test needs nginx: sudo apt-get install nginx" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi
exit 0
