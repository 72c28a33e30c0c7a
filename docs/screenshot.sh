#!/usr/bin/env bash
# Remakes the README's picture: the HTML report of `retention demo`'s execute run
# (a fresh sandbox, the shipped policies/), as headless Chromium renders it offline.
#
#   docs/screenshot.sh [OUT.png]     default: docs/run-report.png
#
# Needs Debian's `chromium` (apt-get install chromium) and the project installed in
# .venv (or set PYTHON to an interpreter that has it).
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/run-report.png}")
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
command -v chromium >/dev/null || { echo "screenshot.sh: chromium is missing (apt-get install chromium)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "$python" -m retention demo --dir "$work/demo" >"$work/demo.log" 2>&1; then
  cat "$work/demo.log" >&2
  exit 1
fi
# Offline: every host name resolves to nowhere, so the page can fetch nothing.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$work/profile" \
  --window-size=1000,2600 --screenshot="$work/shot.png" "file://$work/demo/run.html" \
  >/dev/null 2>&1
mv "$work/shot.png" "$out"
echo "wrote $out"
