#!/usr/bin/env bash
# Browser tests drive Debian's chromium. Install it when missing and we can (root with apt-get);
# otherwise say what to do. The browser tests themselves fail loudly if it is absent.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests (about 2 minutes)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "chromium is missing: install it (e.g. 'sudo apt-get install -y chromium') to run the browser tests" >&2
exit 1
