#!/usr/bin/env bash
# The browser test of the control center: starts both bots with a day's work in them (the
# `showcase` binary of the tests crate), opens the page in headless Chromium, checks that the
# environments, the queue and a failed run's log are shown, and saves a screenshot.
#
#   tests/browser/screenshot.sh [out.png]     default: target/control-center.png
#
# `.ci/run` runs it after the test suite. Chromium is Debian's `chromium` package, installed here
# when missing; only when apt cannot reach its archive is the test skipped, loudly.
# To refresh the README's picture: tests/browser/screenshot.sh docs/control-center.png
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-target/control-center.png}
work=$(mktemp -d)
showcase_pid=

cleanup() {
  if [ -n "$showcase_pid" ] && kill -0 "$showcase_pid" 2>/dev/null; then
    kill "$showcase_pid" 2>/dev/null || true
    wait "$showcase_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "browser test FAILED: $*" >&2; exit 1; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || fail "chromium is missing and cannot be installed here (need root and apt-get)"
  if ! apt-get update -qq >"$work/apt.log" 2>&1; then
    cat "$work/apt.log" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! browser test SKIPPED: apt has no network, so chromium cannot be installed  !!!" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 0
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

echo "==> starting the showcase (both bots, seeded through their real commands)"
cargo build -q -p bg-tests --bin showcase
"${CARGO_TARGET_DIR:-target}/debug/showcase" --serve-for 240s >"$work/showcase.out" 2>"$work/showcase.err" &
showcase_pid=$!
# Wait (bounded) for the line that says everything is seeded and served.
for _ in $(seq 1 600); do
  grep -qx ready "$work/showcase.out" && break
  kill -0 "$showcase_pid" 2>/dev/null || { cat "$work/showcase.err" >&2; fail "the showcase exited"; }
  sleep 0.2
done
grep -qx ready "$work/showcase.out" || fail "the showcase did not get ready in 120 s"
bobby=$(awk '$1 == "bobby" { print $2 }' "$work/showcase.out")
gandalf=$(awk '$1 == "gandalf" { print $2 }' "$work/showcase.out")

chrome() {
  # A fresh profile each time, nothing that phones home.
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$(mktemp -d -p "$work")" --window-size=1400,1000 "$@" 2>>"$work/chromium.log"
}

echo "==> checking what the browser shows"
chrome --dump-dom "$bobby/" >"$work/index.html" || { cat "$work/chromium.log" >&2; fail "chromium could not load $bobby/"; }
for want in 'id="env-env-1"' 'id="env-env-2"' 'id="env-env-3"' 'id="env-env-4"' \
            'demo of the new checkout' 'failed at step <code>build</code>' \
            'id="queue-acme-platform"' '#44 Search: fuzzy matching' '#46 Hotfix' \
            'Migrate billing to the new ledger'; do
  grep -qF "$want" "$work/index.html" || fail "the index does not show: $want"
done
# A failed verification's page shows its log, markup as text.
chrome --dump-dom "$gandalf/queue/acme/platform/pulls/42" >"$work/failed.html"
for want in 'assertion `left == right` failed: ledger balance after migration' \
            'keeps_&lt;legacy&gt;_ids' 'class="badge failed">failed<'; do
  grep -qF "$want" "$work/failed.html" || fail "the failed verification does not show: $want"
done
# And Nightly's faulted environment its step's output.
run=$(grep -o '/nightly/runs/[0-9]*#env-3' "$work/index.html" | head -n1)
[ -n "$run" ] || fail "no link from env-3 to its Nightly run"
chrome --dump-dom "$bobby${run%#*}" >"$work/run.html"
grep -qF 'image registry refused the push of billing:latest' "$work/run.html" \
  || fail "the Nightly run does not show env-3's failing step output"

mkdir -p "$(dirname "$out")"
chrome --screenshot="$out" "$bobby/" >/dev/null
[ -s "$out" ] || fail "no screenshot was written"
echo "browser test passed: environments, the queue and failed logs are shown; screenshot in $out"
