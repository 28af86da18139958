#!/usr/bin/env bash
# bench.smoke: bench/run.sh end to end at tiny sizes (~60-90 s), then what a user of the
# harness relies on: a target-table row per pattern carrying a verdict (or the failed
# reference run that prevented one), every extmem run passing --verify, no DATA-ERROR
# anywhere, kernel swap's swap I/O figures, fio's device figures from before and after the
# systems' runs, a PageRank line, and the PNG plots
# (PageRank's when it ran). Never a speed.
# usage: smoke.sh REPO BUILD_DIR   (root; exit 77 = skipped)
set -uo pipefail
repo=$1 build=$2
(($(id -u) == 0)) || { echo "bench.smoke: skipped, needs root (swapon, cgroups)"; exit 77; }
out=$(mktemp -d /var/tmp/extmem-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "bench.smoke: FAIL: $*"; echo "--- harness output:"; tail -n 60 "$out/output"; exit 1; }

rc=0
"$repo/bench/run.sh" --quick --limit 64M --seconds 1 --no-build --build-dir "$build" \
  --dir "$out/work" --results "$out/results" --doc "" --plots "$out/plots" \
  --pagerank "--vertices 100000 --avg-degree 32 --iterations 3" > "$out/output" 2>&1 || rc=$?
# 3: some run failed (judged below: the kernel's memcg may OOM-kill at these sizes).
((rc == 0 || rc == 3)) || fail "bench/run.sh exited with $rc"

table=$out/results/table.md runs=$out/results/runs.csv
[[ -s $table ]] || fail "no table.md"
for label in "sequential read" "sequential read-modify-write" "random 2 MiB windows, read" \
  "random 2 MiB windows, read-modify-write" "uniform random 4 KiB read" \
  "hot set 90/10, read-modify-write" "working set within the limit" \
  "first touch of fresh memory" "daemon memory"; do
  line=$(grep -F "| $label " "$table" | head -1)
  [[ -n $line ]] || fail "no table row for '$label'"
  # A verdict, or the kernel-swap run whose failure left the ratio empty.
  [[ $line =~ \|\ (pass|miss)\ \| || $line =~ \(kernel/ ]] || fail "row '$label' has no verdict: $line"
done
grep -qE '^pagerank: not built|^\| (clock|frontier|kernel) \| [0-9]' "$table" || fail "no PageRank result or 'not built'"

! grep -q DATA-ERROR "$runs" || fail "a run read wrong data: $(grep DATA-ERROR "$runs")"
# Every extmem run passed (its last attempt; a retry is allowed).
bad=$(awk -F, '$1 == "extmem" { last[$2 "/" $3 "/" $4] = $6 } END { for (k in last) if (last[k] != "ok") print k ": " last[k] }' "$runs")
[[ -z $bad ]] || fail "extmem runs failed: $bad"
(($(awk -F, '$1 == "extmem"' "$runs" | wc -l) >= 9)) || fail "fewer than 9 extmem runs in runs.csv"
# Every passed kernel swap run has its swap read/written MiB/s (pswpin/pswpout during the
# measurement), and the random read row its device-allowed ratio when both figures exist.
bad=$(awk -F, '$1 == "kernel" && $6 == "ok" && ($16 !~ /^[0-9]+[.][0-9]$/ || $17 !~ /^[0-9]+[.][0-9]$/) { print $2 "/" $3 ": \"" $16 "\" \"" $17 "\"" }' "$runs")
[[ -z $bad ]] || fail "kernel runs without swap read/written MiB/s: $bad"
kernel_rnd=$(awk -F, '$1 == "kernel" && $2 == "random" && $3 == "read" && $6 == "ok" && $16 > 0' "$runs")
if [[ -n $kernel_rnd ]] && grep -q 'random read QD[0-9]* \*\*[0-9]' "$out/output"; then
  grep -F "| uniform random 4 KiB read " "$table" | grep -qE 'device allows ≤ [0-9.]+x.*kernel swap [0-9]+%' ||
    fail "the random read row lacks kernel swap's device figures: $(grep -F "| uniform random 4 KiB read " "$table")"
fi

# fio ran before and after the systems, and the ceiling says so.
if grep -q 'random read QD[0-9]* \*\*[0-9]' "$out/output"; then
  grep -qE 'before [0-9]+ / [0-9]+ IOPS.*after [0-9]+ / [0-9]+ IOPS' "$out/output" ||
    fail "the device line lacks fio's runs before and after: $(grep -F 'fio on the same' "$out/output")"
fi

pngs="bench-throughput.png bench-over-time.png"
! grep -qE '^\| (clock|frontier|kernel) \| [0-9]' "$table" || pngs+=" bench-pagerank.png"
for png in $pngs; do
  [[ $(head -c 8 "$out/plots/$png" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "$png missing or not a PNG"
done
# The harness left no swap on.
! grep -q "$out" /proc/swaps || fail "kernel swap left on"
cat "$table"
echo "bench.smoke: ok (harness exit $rc)"
