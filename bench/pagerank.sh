#!/usr/bin/env bash
# bench/pagerank.sh — PageRank under extmem's policies and under kernel swap (run as root).
#
# Runs extmem-pagerank over the same graph with:
#   ram       no limit, no shim (the ceiling; also gives the footprint and the checksum)
#   POLICY    extmemd (started here) + libextmem.so at the limit, for each --policies entry
#   kernel    a swapfile on the same filesystem + a cgroup v1 memory.limit_in_bytes
# and prints, per configuration, the median iteration time of iterations 2..K, whether the
# checksum matches the in-RAM run, and the paging counters of the whole run (graph
# generation included): extmemd's major faults and bytes read/written; the cgroup's
# major faults and the kernel's pswpin/pswpout (machine-wide: other swapping on the
# machine during the run counts too; the table says so). A run under a limit that does
# not end within --timeout is stopped and reported HUNG; the next run goes on.
#
# The default graph (500k vertices, mean in-degree 256: 128M edges, 0.5 GiB) is mostly
# its edges array, scanned once per iteration, while the randomly read contributions
# (4 MiB) stay cached: at half the footprint paging, not computing, sets the pace.
#
# usage: bench/pagerank.sh [options]
#   --vertices N        graph vertices (default 500000)
#   --avg-degree D      mean in-degree (default 256)
#   --iterations K      iterations (default 6)
#   --seed S            graph seed (default 1)
#   --threads T         PageRank threads (default 2)
#   --limit SIZE        DRAM limit (default: half the graph's footprint)
#   --timeout S         seconds a run under a limit may take (default: 60 + generation and
#                       every iteration each paging the whole footprint at 2 MiB/s)
#   --policies "..."    extmem policies to run (default "frontier clock")
#   --configs "..."     any of "ram extmem kernel" (default all)
#   --dir DIR           directory for the swap files (default: a new one under /var/tmp)
#   --build-dir DIR     the extmem build (default build/)
#   --bin-dir DIR       take extmemd, libextmem.so and extmem-pagerank from DIR instead
#                       (bench/run.sh's copies)
#
# Exit status: 0 every run passed with the in-RAM checksum; 3 a run failed, hung or its
# checksum differs (the table says which); 1 the harness failed.
#
# The machine is left as it was found, also on failure: the daemon is stopped, the bench
# swapfile swapped off and deleted, the cgroup removed (and the hierarchy unmounted if
# this script mounted it). Swap areas that are already on (someone else's) are left
# alone. Logs stay in DIR/results.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build
VERTICES=500000 DEGREE=256 ITERATIONS=6 SEED=1 THREADS=2 LIMIT='' POLICIES="frontier clock"
CONFIGS="ram extmem kernel" WORKDIR='' BIN_DIR='' TIMEOUT=''
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"
while (($#)); do
  case $1 in
    --vertices) VERTICES=$2; shift ;;
    --avg-degree) DEGREE=$2; shift ;;
    --iterations) ITERATIONS=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --limit) LIMIT=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --policies) POLICIES=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --dir) WORKDIR=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --bin-dir) BIN_DIR=$2; shift ;;
    -h|--help) sed -n '3,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
require_root
[[ -z $TIMEOUT || $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout needs a positive whole number of seconds"
PAGERANK=$BUILD/bench/extmem-pagerank EXTMEMD=$BUILD/daemon/extmemd SHIM=$BUILD/shim/libextmem.so
if [[ -n $BIN_DIR ]]; then
  PAGERANK=$BIN_DIR/extmem-pagerank EXTMEMD=$BIN_DIR/extmemd SHIM=$BIN_DIR/libextmem.so
fi
for f in "$PAGERANK" "$EXTMEMD" "$SHIM"; do [[ -e $f ]] || die "missing $f (build first)"; done
ARGS=(--vertices "$VERTICES" --avg-degree "$DEGREE" --iterations "$ITERATIONS" --seed "$SEED"
  --threads "$THREADS")

# shellcheck disable=SC2317  # run by bench/lib.sh's exit trap
cleanup_finish() {  # status
  [[ -z $WORKDIR ]] || rm -f "$WORKDIR/extmem.swap" "$WORKDIR/sock" "$WORKDIR/control.sock"
  (($1 == 0 || $1 == 3)) || log "failed (status $1); machine state restored; logs in $WORKDIR/results"
}
install_cleanup

if [[ -z $WORKDIR ]]; then WORKDIR=$(mktemp -d /var/tmp/extmem-pagerank.XXXXXX); fi
mkdir -p "$WORKDIR/results"
WORKDIR=$(cd "$WORKDIR" && pwd)
RESULTS=$WORKDIR/results
if kernel_swap_on; then
  log "note: swap is already on (not ours; left alone):"; tail -n +2 /proc/swaps >&2
fi

# median of iterations 2..K from a log
median() {
  awk '/^iteration [0-9]+:/ { sub(":", "", $2); if ($2 >= 2) print $3 }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
         else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
checksum() { sed -n 's/^checksum: //p' "$1"; }
# a counter from the line extmemd logs when the client goes: counter NAME LOG
counter() {
  grep 'disconnected: pid=' "$2" | tail -1 | grep -oE "[( ]$1=[0-9.]+( [KMGTP]iB| B)?" | cut -d= -f2
}
declare -A MEDIAN SUM MAJOR READ WRITTEN FAILED FAILURE

# Runs "$@" (output in LOG) with the run timeout. A failed run gets FAILED[NAME] (HUNG when
# it ran out of time, else FAILED) and FAILURE[NAME] (what happened, WHY for an exit).
run_limited() {  # name log why command...
  local name=$1 out=$2 why=$3 t0=$SECONDS rc=0
  shift 3
  # --foreground: Ctrl-C reaches the run too. timeout then exits 128 + the signal instead
  # of dying of it, so the shell does not run its trap: the harness stops here.
  timeout --foreground -k 10 "$TIMEOUT" "$@" > "$out" || rc=$?
  case $rc in 129 | 130 | 143) exit "$rc" ;; esac
  if ((rc != 0 && SECONDS - t0 >= TIMEOUT)); then
    FAILED[$name]=HUNG FAILURE[$name]="stopped after $TIMEOUT s"
    log "$name: HUNG (stopped after $TIMEOUT s)"
  elif ((rc != 0)); then
    FAILED[$name]=FAILED FAILURE[$name]="exit $rc$why"
  fi
}

log "ram: ${ARGS[*]}"
"$PAGERANK" "${ARGS[@]}" > "$RESULTS/ram.log"
FOOTPRINT=$(sed -n 's/^graph: .* memory \([0-9]*\) bytes.*/\1/p' "$RESULTS/ram.log")
REFERENCE=$(checksum "$RESULTS/ram.log")
MEDIAN[ram]=$(median "$RESULTS/ram.log")
SUM[ram]=$REFERENCE
LIMIT_B=$((FOOTPRINT / 2))
[[ -z $LIMIT ]] || LIMIT_B=$(to_bytes "$LIMIT")
SWAP_B=$((2 * FOOTPRINT + (1 << 30)))
[[ -n $TIMEOUT ]] || TIMEOUT=$((60 + (ITERATIONS + 1) * (FOOTPRINT >> 20) / 2))
log "graph footprint $FOOTPRINT bytes, limit $LIMIT_B bytes, run timeout $TIMEOUT s"

if want extmem; then
  for policy in $POLICIES; do
    log "extmem $policy"
    : > "$RESULTS/extmemd-$policy.log"
    start_extmemd "$WORKDIR/sock" "$RESULTS/extmemd-$policy.log" --control "$WORKDIR/control.sock" \
      --swap "$WORKDIR/extmem.swap" --swap-size "$((SWAP_B >> 20))M"
    run_limited "$policy" "$RESULTS/$policy.log" "" env LD_PRELOAD="$SHIM" \
      EXTMEM_SOCKET="$WORKDIR/sock" EXTMEM_DRAM="$LIMIT_B" EXTMEM_POLICY="$policy" \
      EXTMEM_REQUIRED=1 "$PAGERANK" "${ARGS[@]}"
    stop_extmemd
    rm -f "$WORKDIR/extmem.swap"
    MEDIAN[$policy]=$(median "$RESULTS/$policy.log")
    SUM[$policy]=$(checksum "$RESULTS/$policy.log")
    MAJOR[$policy]=$(counter major "$RESULTS/extmemd-$policy.log")
    READ[$policy]=$(counter read "$RESULTS/extmemd-$policy.log")
    WRITTEN[$policy]=$(counter written "$RESULTS/extmemd-$policy.log")
  done
fi

if want kernel; then
  log "kernel swap"
  memcg_create extmem-pagerank "$LIMIT_B"
  kswap_on "$WORKDIR/kernel.swap" "$SWAP_B"
  IN0=$(vmstat_count pswpin) OUT0=$(vmstat_count pswpout)
  run_limited kernel "$RESULTS/kernel.log" " (the memcg may OOM-kill)" \
    "${IN_MEMCG[@]}" "$PAGERANK" "${ARGS[@]}"
  READ[kernel]="$(((($(vmstat_count pswpin) - IN0) * 4096) >> 20)) MiB"
  WRITTEN[kernel]="$(((($(vmstat_count pswpout) - OUT0) * 4096) >> 20)) MiB"
  kswap_off
  MAJOR[kernel]=$(memcg_stat pgmajfault)
  memcg_remove
  MEDIAN[kernel]=$(median "$RESULTS/kernel.log")
  SUM[kernel]=$(checksum "$RESULTS/kernel.log")
fi

echo
echo "PageRank ${ARGS[*]}: footprint $((FOOTPRINT >> 20)) MiB, limit $((LIMIT_B >> 20)) MiB"
echo "| config | median s/iteration (2..$ITERATIONS) | vs kernel swap | major faults | read | written | checksum |"
echo "|---|---:|---:|---:|---:|---:|---|"
BAD=0
for c in ram $POLICIES kernel; do
  [[ -n ${MEDIAN[$c]:-} ]] || continue
  if [[ -n ${FAILED[$c]:-} ]]; then
    echo "| $c | ${FAILED[$c]} (${FAILURE[$c]}; see $c.log) | | | | | |"
    BAD=1
    continue
  fi
  ratio=$(awk -v k="${MEDIAN[kernel]:-}" -v m="${MEDIAN[$c]}" 'BEGIN { if (k > 0 && m > 0) printf "%.2fx", k / m; else print "-" }')
  [[ -z ${FAILED[kernel]:-} ]] || ratio=-
  ok=matches
  [[ ${SUM[$c]} == "$REFERENCE" ]] || { ok="DIFFERS: ${SUM[$c]}"; BAD=1; }
  echo "| $c | ${MEDIAN[$c]} | $ratio | ${MAJOR[$c]:-} | ${READ[$c]:-} | ${WRITTEN[$c]:-} | $ok |"
done
[[ -z ${READ[kernel]:-} ]] ||
  echo "kernel read/written: the machine's pswpin/pswpout during the run (machine-wide: other swapping counts too)"
echo "logs: $RESULTS"
exit $((BAD ? 3 : 0))
