#!/usr/bin/env bash
# Times the whole `gandalf plan --files - --json` process (SPEC §9: < 100 ms for 5,000 resources
# and 20,000 changed files) for every map shape and change of `shared/benches/affected.rs`:
# process start, reading the map and the paths, parsing, planning, printing the JSON.
# Usage: tests/bench/plan.sh [runs]          (default 20 runs per case)
# Needs a release `gandalf` (built here unless GANDALF_BIN points at one); uses `hyperfine` when
# installed (apt-get install hyperfine), else a loop timed with `date +%s%N` (mean, min and max of the runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-20}
inputs="$root/.bench-plan"
bin=${GANDALF_BIN:-"${CARGO_TARGET_DIR:-$root/target}/release/gandalf"}

cd "$root"
if [ -z "${GANDALF_BIN:-}" ]; then cargo build --release -p gandalf >&2; fi
# The same generator as the criterion bench, so both measure the same inputs.
PLANNER_BENCH_WRITE="$inputs" cargo bench -p shared --bench affected >&2

echo "# $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $bin"
for shape in prefix prefix_suffix anywhere braces mix; do
  for change in spread corner; do
    map="$inputs/$shape.toml" files="$inputs/$shape-$change.txt"
    # A wrong answer would be a fast one: check the plan is non-trivial before timing it.
    "$bin" plan --map "$map" --files - --json <"$files" | grep -q '"affected":\["' \
      || { echo "no plan for $shape/$change" >&2; exit 1; }
    if command -v hyperfine >/dev/null; then
      # hyperfine runs the command through a shell (for the `<`) and subtracts the shell's own
      # start-up time, which it measures first.
      hyperfine --style basic --warmup 3 --runs "$runs" \
        --command-name "$shape/$change" "$bin plan --map $map --files - --json <$files >/dev/null" \
        | grep -E 'Benchmark|Time|Range'
    else
      total=0 min=0 max=0
      for _ in $(seq "$runs"); do
        start=$(date +%s%N)
        "$bin" plan --map "$map" --files - --json <"$files" >/dev/null
        took=$(( ($(date +%s%N) - start) / 1000 ))
        total=$((total + took))
        if [ "$min" = 0 ] || [ "$took" -lt "$min" ]; then min=$took; fi
        if [ "$took" -gt "$max" ]; then max=$took; fi
      done
      printf '%-24s mean %6.1f ms  min %6.1f ms  max %6.1f ms  (%s runs)\n' "$shape/$change" \
        "$(echo "$total / $runs / 1000" | bc -l)" "$(echo "$min / 1000" | bc -l)" "$(echo "$max / 1000" | bc -l)" "$runs"
    fi
  done
done
