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
# major faults and the kernel's pswpin/pswpout (system-wide: kernel swap is otherwise off).
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
#   --policies "..."    extmem policies to run (default "frontier clock")
#   --configs "..."     any of "ram extmem kernel" (default all)
#   --dir DIR           directory for the swap files (default: a new one under /var/tmp)
#   --build-dir DIR     the extmem build (default build/)
#   --bin-dir DIR       take extmemd, libextmem.so and extmem-pagerank from DIR instead
#                       (bench/run.sh's copies)
#
# Exit status: 0 every run passed with the in-RAM checksum; 3 a run failed or its checksum
# differs (the table says which); 1 the harness failed.
#
# The machine is left as it was found, also on failure: the daemon is stopped, the bench
# swapfile swapped off and deleted, the cgroup removed (and the hierarchy unmounted if
# this script mounted it). Swap areas that are already on (someone else's) are left
# alone. Logs stay in DIR/results.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build
VERTICES=500000 DEGREE=256 ITERATIONS=6 SEED=1 THREADS=2 LIMIT='' POLICIES="frontier clock"
CONFIGS="ram extmem kernel" WORKDIR='' BIN_DIR=''
die() { echo "pagerank.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
while (($#)); do
  case $1 in
    --vertices) VERTICES=$2; shift ;;
    --avg-degree) DEGREE=$2; shift ;;
    --iterations) ITERATIONS=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --limit) LIMIT=$2; shift ;;
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
(($(id -u) == 0)) || die "run as root (swapon, cgroups and the daemon need it)"
want() { [[ " $CONFIGS " == *" $1 "* ]]; }
to_bytes() {
  [[ $1 =~ ^([0-9]+)([KkMmGg]?)$ ]] || die "bad size '$1'"
  local n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in [Kk]) n=$((n << 10)) ;; [Mm]) n=$((n << 20)) ;; [Gg]) n=$((n << 30)) ;; esac
  echo "$n"
}
PAGERANK=$BUILD/bench/extmem-pagerank EXTMEMD=$BUILD/daemon/extmemd SHIM=$BUILD/shim/libextmem.so
if [[ -n $BIN_DIR ]]; then
  PAGERANK=$BIN_DIR/extmem-pagerank EXTMEMD=$BIN_DIR/extmemd SHIM=$BIN_DIR/libextmem.so
fi
for f in "$PAGERANK" "$EXTMEMD" "$SHIM"; do [[ -e $f ]] || die "missing $f (build first)"; done
ARGS=(--vertices "$VERTICES" --avg-degree "$DEGREE" --iterations "$ITERATIONS" --seed "$SEED"
  --threads "$THREADS")

DAEMON_PID='' KSWAP_ON=0 CG='' CG_ROOT='' CG_MOUNTED=''
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $DAEMON_PID ]]; then kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; fi
  if ((KSWAP_ON)); then
    # Right after a memcg OOM kill swapoff can fail for a moment: retry, then say so.
    for _ in 1 2 3 4 5; do swapoff "$WORKDIR/kernel.swap" && break; sleep 2; done
    if grep -qF "$WORKDIR/kernel.swap" /proc/swaps; then
      log "WARNING: could not swap off $WORKDIR/kernel.swap: run swapoff on it"
    fi
  fi
  if [[ -n $CG && -d $CG ]]; then
    while read -r p; do echo "$p" > "$CG_ROOT/cgroup.procs"; done < "$CG/cgroup.procs"
    rmdir "$CG"
  fi
  [[ -n $CG_MOUNTED ]] && umount "$CG_MOUNTED" && rmdir "$CG_MOUNTED"
  rm -f "$WORKDIR/extmem.swap" "$WORKDIR/kernel.swap" "$WORKDIR/sock" "$WORKDIR/control.sock"
  ((rc == 0 || rc == 3)) || log "failed (status $rc); machine state restored; logs in $WORKDIR/results"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z $WORKDIR ]]; then WORKDIR=$(mktemp -d /var/tmp/extmem-pagerank.XXXXXX); fi
mkdir -p "$WORKDIR/results"
WORKDIR=$(cd "$WORKDIR" && pwd)
RESULTS=$WORKDIR/results
if grep -qv '^Filename' /proc/swaps; then
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
vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
declare -A MEDIAN SUM MAJOR READ WRITTEN FAILED

log "ram: ${ARGS[*]}"
"$PAGERANK" "${ARGS[@]}" > "$RESULTS/ram.log"
FOOTPRINT=$(sed -n 's/^graph: .* memory \([0-9]*\) bytes.*/\1/p' "$RESULTS/ram.log")
REFERENCE=$(checksum "$RESULTS/ram.log")
MEDIAN[ram]=$(median "$RESULTS/ram.log")
SUM[ram]=$REFERENCE
LIMIT_B=$((FOOTPRINT / 2))
[[ -z $LIMIT ]] || LIMIT_B=$(to_bytes "$LIMIT")
SWAP_B=$((2 * FOOTPRINT + (1 << 30)))
log "graph footprint $FOOTPRINT bytes, limit $LIMIT_B bytes"

if want extmem; then
  for policy in $POLICIES; do
    log "extmem $policy"
    "$EXTMEMD" --socket "$WORKDIR/sock" --control "$WORKDIR/control.sock" \
      --swap "$WORKDIR/extmem.swap" --swap-size "$((SWAP_B >> 20))M" \
      > "$RESULTS/extmemd-$policy.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 1 100); do [[ -S $WORKDIR/sock ]] && break; sleep 0.1; done
    [[ -S $WORKDIR/sock ]] || die "extmemd did not start; see $RESULTS/extmemd-$policy.log"
    env LD_PRELOAD="$SHIM" EXTMEM_SOCKET="$WORKDIR/sock" EXTMEM_DRAM="$LIMIT_B" \
      EXTMEM_POLICY="$policy" EXTMEM_REQUIRED=1 "$PAGERANK" "${ARGS[@]}" > "$RESULTS/$policy.log" ||
      FAILED[$policy]="exit $?"
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
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
  CG_ROOT=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
  if [[ -z $CG_ROOT ]]; then
    CG_MOUNTED=$(mktemp -d /tmp/extmem-pagerank-memcg.XXXXXX)
    mount -t cgroup -o memory none "$CG_MOUNTED" || { rmdir "$CG_MOUNTED"; CG_MOUNTED=; die "no cgroup v1 memory controller"; }
    CG_ROOT=$CG_MOUNTED
  fi
  CG=$CG_ROOT/extmem-pagerank-$$
  mkdir "$CG"
  echo "$LIMIT_B" > "$CG/memory.limit_in_bytes"
  fallocate -l "$SWAP_B" "$WORKDIR/kernel.swap"
  chmod 600 "$WORKDIR/kernel.swap"
  mkswap "$WORKDIR/kernel.swap" > /dev/null
  KSWAP_ON=1
  swapon "$WORKDIR/kernel.swap"
  IN0=$(vmstat pswpin) OUT0=$(vmstat pswpout)
  # shellcheck disable=SC2016
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" "$PAGERANK" "${ARGS[@]}" \
    > "$RESULTS/kernel.log" || FAILED[kernel]="exit $? (the memcg may OOM-kill)"
  READ[kernel]="$(((($(vmstat pswpin) - IN0) * 4096) >> 20)) MiB"
  WRITTEN[kernel]="$(((($(vmstat pswpout) - OUT0) * 4096) >> 20)) MiB"
  swapoff "$WORKDIR/kernel.swap"; KSWAP_ON=0
  rm -f "$WORKDIR/kernel.swap"
  MAJOR[kernel]=$(awk '$1 == "pgmajfault" { print $2 }' "$CG/memory.stat")
  rmdir "$CG" && CG=
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
    echo "| $c | FAILED (${FAILED[$c]}; see $c.log) | | | | | |"
    BAD=1
    continue
  fi
  ratio=$(awk -v k="${MEDIAN[kernel]:-}" -v m="${MEDIAN[$c]}" 'BEGIN { if (k > 0 && m > 0) printf "%.2fx", k / m; else print "-" }')
  [[ -z ${FAILED[kernel]:-} ]] || ratio=-
  ok=matches
  [[ ${SUM[$c]} == "$REFERENCE" ]] || { ok="DIFFERS: ${SUM[$c]}"; BAD=1; }
  echo "| $c | ${MEDIAN[$c]} | $ratio | ${MAJOR[$c]:-} | ${READ[$c]:-} | ${WRITTEN[$c]:-} | $ok |"
done
echo "logs: $RESULTS"
exit $((BAD ? 3 : 0))
