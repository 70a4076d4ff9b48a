#!/usr/bin/env bash
# Render a cloob HTML report in headless Chromium and save a full-width screenshot.
#   scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
# Needs Debian's `chromium` (apt-get install chromium). Offline: every network feature is off.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280,4000}
[ -f "$report" ] || { echo "error: no report at $1" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "error: chromium is not on PATH (apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --screenshot="$out" --window-size="$size" "file://$report" >/dev/null 2>&1 || true
[ -s "$out" ] || { echo "error: chromium wrote no screenshot to $out" >&2; exit 1; }
echo "wrote $out"
