#!/usr/bin/env bash
# Runs every cargo-fuzz target of Bobby and Gandalf, one after the other, for a given time each:
#
#   fuzz/run.sh [seconds-per-target] [target…]      # default: 300 seconds, every target
#
# Installs cargo-fuzz when it is missing (needs crates.io) and uses the nightly toolchain. Each
# target starts from its committed seeds in fuzz/corpus/<target>/ and grows a working corpus in
# fuzz/.work/corpus/<target>/ (ignored by git), so the seeds stay small and hand-written. One job
# per target, niced: the machine is shared. A crash stops the script with the input saved under
# fuzz/artifacts/<target>/; the summary of every run (executions, exec/s) goes to
# fuzz/.work/<target>.log and is printed at the end, ready for docs/fuzzing.md. One process per
# target (no -jobs: libFuzzer would fork workers that log to ./fuzz-N.log instead).
#
# Not run by .ci/run (CI time is limited); what the fuzzers found lives on as unit tests.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(bobby_command gandalf_command duration resource_map github_webhook slack_signature)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# Our parsers are safe Rust (no `unsafe`), so AddressSanitizer would only slow the search down;
# panics, failed assertions and overflow checks (debug assertions are on) are what we look for.
fuzz=(cargo +nightly fuzz)
build_flags=(--sanitizer none)

"${fuzz[@]}" build "${build_flags[@]}"
mkdir -p .work
for t in "${targets[@]}"; do
  mkdir -p ".work/corpus/$t"
  echo "==> $t for ${secs}s" >&2
  nice -n 10 "${fuzz[@]}" run "${build_flags[@]}" "$t" ".work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee ".work/$t.log" | grep -E '^#[0-9]+ +(DONE|pulse)|ERROR|panicked|SUMMARY' >&2 || true
  if grep -qE 'ERROR: libFuzzer|panicked at' ".work/$t.log"; then
    echo "$t: crash; see fuzz/.work/$t.log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
done

echo
echo "| target | seconds | executions | exec/s |"
echo "|---|---|---|---|"
for t in "${targets[@]}"; do
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' ".work/$t.log" | grep -oE '[0-9]+$' || echo '?')
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' ".work/$t.log" | grep -oE '[0-9]+$' || echo '?')
  echo "| $t | $secs | $runs | $rate |"
done
