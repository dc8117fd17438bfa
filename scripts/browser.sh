#!/usr/bin/env bash
# Install Debian's Chromium for the browser test of `toolkit ui` (tests/core/test_ui.py) when it is missing.
# Best effort: without root or a package mirror the test skips, and this says so.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >/dev/null 2>&1; then
    exit 0
  fi
fi
echo "note: Chromium could not be installed here; the browser test of toolkit ui will be skipped" >&2
exit 0
