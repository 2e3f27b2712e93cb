#!/bin/sh
# Install Debian's Chromium for the browser tests (tests/test_report_browser.py), if missing.
# Playwright drives it through executable_path=/usr/bin/chromium; `playwright install` (which
# downloads its own browsers) is not needed. Needs root (or sudo) and apt.
set -eu
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
