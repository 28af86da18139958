#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly (traps, attempt_$config)
# bench/run.sh — compare extmem with kernel swap on the same device (run as root).
#
# Runs extmem-mmapbench for every pattern x op with a working set larger than the DRAM
# limit under:
#   extmem  extmemd (started here) + libextmem.so; kernel swap off
#   kernel  a swapfile on the same filesystem + a cgroup v1 memory limit
#   in-RAM  no limit, no shim (the ceiling)
# and measures the device with fio (4 KiB random read IOPS at QD=threads, 4 KiB random
# write IOPS, 1 MiB sequential read MiB/s). Prints a table and writes it, with the machine
# and the commands, into docs/PERFORMANCE.md between the RESULTS markers.
#
# usage: bench/run.sh [--quick] [options]
#   --quick            smoke run: limit 256M, size 512M, 5 s per run
#   --limit SIZE       DRAM limit (default 1G)                      env BENCH_LIMIT
#   --size SIZE        working set (default 2 x limit)              env BENCH_SIZE
#   --seconds S        measured seconds per run (default 20)        env BENCH_SECONDS
#   --threads N        benchmark threads (default 2)                env BENCH_THREADS
#   --policy P         extmem policy, clock or fifo (default clock)  env BENCH_POLICY
#   --patterns "..."   default "seq window random hotset"           env BENCH_PATTERNS
#   --ops "..."        default "read rmw"                           env BENCH_OPS
#   --configs "..."    any of "device ram extmem kernel" (default all) env BENCH_CONFIGS
#   --dir DIR          directory for both swap files and the fio file; a new directory
#                      under /var/tmp by default                    env BENCH_DIR
#   --results DIR      logs, CSV and the table (default DIR/results)
#   --doc FILE         Markdown file to update (default docs/PERFORMANCE.md; "" for none)
#   --build-dir DIR    the extmem build to use (default build/)     env BUILD_DIR
#   --no-build         use the binaries in the build directory as they are (no cmake/ninja)
#   --rev TEXT         how to name the extmem version in the doc (default: git commit,
#                      "+local changes" when daemon/shim/kernel/proto differ from it)
#
# The machine is left as it was found, also on Ctrl-C or failure: the daemon is stopped,
# the bench swapfile is swapped off, the cgroup removed (and the cgroup hierarchy
# unmounted if this script mounted it), swap areas that were on are swapped on again,
# and the swap and fio files are deleted. Logs stay in the results directory.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- options ----------------------------------------------------------------------
LIMIT=${BENCH_LIMIT:-}
SIZE=${BENCH_SIZE:-}
SECS=${BENCH_SECONDS:-}
THREADS=${BENCH_THREADS:-2}
POLICY=${BENCH_POLICY:-clock}
PATTERNS=${BENCH_PATTERNS:-seq window random hotset}
OPS=${BENCH_OPS:-read rmw}
CONFIGS=${BENCH_CONFIGS:-device ram extmem kernel}
WORKDIR=${BENCH_DIR:-}
RESULTS=
DOC=$REPO/docs/PERFORMANCE.md
BUILD_FIRST=1
REV=${BENCH_REV:-}
QUICK=0
ARGS_TEXT=$(printf '%q ' "$@"); ARGS_TEXT=${ARGS_TEXT% }
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --limit) LIMIT=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --policy) POLICY=$2; shift ;;
    --patterns) PATTERNS=$2; shift ;;
    --ops) OPS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --dir) WORKDIR=$2; shift ;;
    --results) RESULTS=$2; shift ;;
    --doc) DOC=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --no-build) BUILD_FIRST=0 ;;
    --rev) REV=$2; shift ;;
    -h|--help) sed -n '3,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
if ((QUICK)); then
  LIMIT=${LIMIT:-256M}; SIZE=${SIZE:-512M}; SECS=${SECS:-5}
else
  LIMIT=${LIMIT:-1G}; SECS=${SECS:-20}
fi

to_bytes() {  # 512M -> 536870912
  local v=$1 n mult=1
  [[ $v =~ ^([0-9]+)([KkMmGgTt]?)(i?B?)$ ]] || die "bad size '$v'"
  n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    [Kk]) mult=$((1 << 10)) ;; [Mm]) mult=$((1 << 20)) ;;
    [Gg]) mult=$((1 << 30)) ;; [Tt]) mult=$((1 << 40)) ;;
  esac
  echo $((n * mult))
}
human() { awk -v b="$1" 'BEGIN { if (b >= 2^30 && b % 2^30 == 0) printf "%dG", b/2^30;
  else if (b >= 2^20) printf "%dM", b/2^20; else printf "%d", b }'; }

LIMIT_B=$(to_bytes "$LIMIT")
if [[ -z $SIZE ]]; then SIZE_B=$((2 * LIMIT_B)); else SIZE_B=$(to_bytes "$SIZE"); fi
SIZE=$(human "$SIZE_B"); LIMIT=$(human "$LIMIT_B")
# Both swap areas hold the whole working set twice over, at least 4 GiB.
SWAP_B=$((2 * SIZE_B)); ((SWAP_B >= (4 << 30))) || SWAP_B=$((4 << 30))
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "--threads needs a positive number"
[[ $SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds needs a number"
case $POLICY in clock|fifo) ;; *) die "--policy needs clock or fifo" ;; esac
want() { [[ " $CONFIGS " == *" $1 "* ]]; }

(($(id -u) == 0)) || die "run as root (swapon, cgroups and the daemon need it)"

# ---- state for cleanup ------------------------------------------------------------
DAEMON_PID=
BENCH_PID=
KSWAP_ON=0
CG=
CG_ROOT=
CG_MOUNTED=
PRIOR_SWAPS=()
WORKDIR_CREATED=0

stop_daemon() {
  [[ -n $DAEMON_PID ]] || return 0
  if kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
      log "extmemd $DAEMON_PID did not stop within 30 s after SIGTERM: killing it"
      kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
  fi
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
}

kswap_off() {
  if ((KSWAP_ON)) || { [[ -n $WORKDIR ]] && grep -qF "$WORKDIR/kernel.swap" /proc/swaps; }; then
    swapoff "$WORKDIR/kernel.swap" 2>/dev/null || log "warning: swapoff $WORKDIR/kernel.swap failed"
  fi
  KSWAP_ON=0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ -n $BENCH_PID ]]; then
    kill -TERM -- "-$BENCH_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 -- "-$BENCH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
  fi
  stop_daemon
  kswap_off
  if [[ -n $CG && -d $CG ]]; then
    # Whatever is left in the cgroup (nothing, normally) goes back to the root group.
    while read -r p; do echo "$p" > "$CG_ROOT/cgroup.procs"; done < "$CG/cgroup.procs" 2>/dev/null
    for _ in 1 2 3 4 5; do rmdir "$CG" 2>/dev/null && break; sleep 0.5; done
    [[ -d $CG ]] && log "warning: could not remove cgroup $CG"
  fi
  if [[ -n $CG_MOUNTED ]]; then
    if umount "$CG_MOUNTED"; then rmdir "$CG_MOUNTED"; else log "warning: could not unmount $CG_MOUNTED"; fi
  fi
  for s in "${PRIOR_SWAPS[@]}"; do
    swapon "$s" 2>/dev/null || log "warning: could not swap $s back on"
  done
  if [[ -n $WORKDIR ]]; then
    rm -f "$WORKDIR/extmem.swap" "$WORKDIR/kernel.swap" "$WORKDIR/fio.dat" "$WORKDIR/sock"
    rm -rf "${WORKDIR:?}/bin"
    ((WORKDIR_CREATED)) && [[ $RESULTS != "$WORKDIR"/* ]] && rmdir "$WORKDIR" 2>/dev/null
  fi
  ((rc == 0)) || log "failed or interrupted (status $rc); machine state restored; logs in ${RESULTS:-?}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- preparation ------------------------------------------------------------------
if [[ -z $WORKDIR ]]; then
  WORKDIR=$(mktemp -d /var/tmp/extmem-bench.XXXXXX)
  WORKDIR_CREATED=1
else
  mkdir -p "$WORKDIR"
  WORKDIR=$(cd "$WORKDIR" && pwd)
fi
RESULTS=${RESULTS:-$WORKDIR/results}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
log "work directory $WORKDIR, results in $RESULTS"

if ((BUILD_FIRST)); then
  log "building"
  cmake -S "$REPO" -B "$BUILD" -G Ninja >/dev/null
  ninja -C "$BUILD" extmemd extmem >/dev/null
  ninja -C "$BUILD" extmem-mmapbench >/dev/null 2>&1 || true  # once bench/ is in the build
fi
# The binaries are copied so that a rebuild during the run cannot change them.
mkdir -p "$WORKDIR/bin"
cp "$BUILD/daemon/extmemd" "$WORKDIR/bin/extmemd"
cp -L "$BUILD/shim/libextmem.so" "$WORKDIR/bin/libextmem.so"
if [[ -x $BUILD/bench/extmem-mmapbench ]]; then
  cp "$BUILD/bench/extmem-mmapbench" "$WORKDIR/bin/"
else
  c++ -std=c++20 -O2 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion \
    -Werror -pthread "$REPO/bench/mmapbench.cpp" -o "$WORKDIR/bin/extmem-mmapbench"
fi
EXTMEMD=$WORKDIR/bin/extmemd
SHIM=$WORKDIR/bin/libextmem.so
BENCH=$WORKDIR/bin/extmem-mmapbench

if want device && ! command -v fio >/dev/null; then
  log "installing fio"
  apt-get install -y fio >/dev/null 2>&1 || log "warning: fio unavailable; the device ceiling is skipped"
fi

# Swap areas that are on now are switched off for the run and back on at the end.
while read -r name _; do
  [[ $name == Filename ]] && continue
  PRIOR_SWAPS+=("$name")
done < /proc/swaps
for s in "${PRIOR_SWAPS[@]}"; do
  log "swapping off $s for the run (it is swapped on again at the end)"
  swapoff "$s"
done

FS_TYPE=$(df -T "$WORKDIR" | awk 'NR == 2 { print $2 }')
FS_DEV=$(df -T "$WORKDIR" | awk 'NR == 2 { print $1 }')
FS_MNT=$(df -T "$WORKDIR" | awk 'NR == 2 { print $7 }')
if [[ -n $REV ]]; then
  GIT_REV=$REV
else
  GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$REPO" diff --quiet HEAD -- daemon shim kernel proto 2>/dev/null || GIT_REV="$GIT_REV+local changes"
fi

# Populate and verify at 1 MiB/s or better each, else the run counts as hung.
RUN_TIMEOUT=$(awk -v s="$SECS" -v b="$SIZE_B" 'BEGIN { printf "%d", s + 60 + b / 2^20 / 4 }')
TS_CSV=$RESULTS/timeseries.csv
RUNS_CSV=$RESULTS/runs.csv
echo "config,pattern,op,t_ms,pages_per_sec" > "$TS_CSV"
echo "config,pattern,op,attempt,status,pages_per_sec,populate_ms,verify,run_seconds,majfaults,evictions,fault_p50_us,fault_p99_us,errors" > "$RUNS_CSV"

bench_args() { echo --size "$SIZE_B" --threads "$THREADS" --pattern "$1" --op "$2" --seconds "$SECS" --report-interval 1000 --verify; }

# Runs one benchmark command ("$@") in the background, with its output in $out. Sends
# SIGUSR1 to extmemd when the measurement ends, so the daemon logs its stats then.
# Sets RUN_RC and RUN_SECS.
run_one() {
  local out=$1; shift
  local signalled=0 t0=$SECONDS
  # Its own process group (setsid), so that cleanup can stop timeout and the benchmark.
  setsid "$@" > "$out" 2>&1 &
  BENCH_PID=$!
  RUN_RC=0
  {  # stderr off: bash's own "Killed" notice for the job (the status is reported below)
    while kill -0 "$BENCH_PID"; do
      if ((!signalled)) && [[ -n $DAEMON_PID ]] && grep -q '^RESULT' "$out"; then
        kill -USR1 "$DAEMON_PID" || true
        signalled=1
      fi
      sleep 0.2
    done
    wait "$BENCH_PID" || RUN_RC=$?
  } 2>/dev/null
  RUN_SECS=$((SECONDS - t0))
  BENCH_PID=
}

# One attempt of each configuration: runs it into $1 and sets EXTRA (the detail columns
# majfaults,evictions,p50,p99,errors) and OOM (1 when the OOM killer fired).
attempt_ram() {
  # shellcheck disable=SC2046
  run_one "$1" timeout -k 10 "$RUN_TIMEOUT" "$BENCH" $(bench_args "$pattern" "$op")
  EXTRA=",,,," OOM=0
}

attempt_extmem() {
  local out=$1 pid line
  # shellcheck disable=SC2046
  run_one "$out" timeout -k 10 "$RUN_TIMEOUT" env LD_PRELOAD="$SHIM" \
    EXTMEM_SOCKET="$WORKDIR/sock" EXTMEM_DRAM="$LIMIT_B" EXTMEM_POLICY="$POLICY" \
    EXTMEM_REQUIRED=1 "$BENCH" $(bench_args "$pattern" "$op")
  EXTRA=",,,," OOM=0
  pid=$(sed -n 's/^BENCH pid=\([0-9]*\).*/\1/p' "$out")
  [[ -n $pid ]] || return 0
  sleep 0.3  # the daemon logs the client's final line when it sees it leave
  # Counters at the end of the measurement (SIGUSR1), else at exit.
  line=$(grep -E "stats: pid=$pid " "$RESULTS/extmemd.log" | tail -1 || true)
  [[ -n $line ]] || line=$(grep -E "client $pid (disconnected|exited)" "$RESULTS/extmemd.log" | tail -1 || true)
  f() { grep -oE "[( ]$1=[^ )]*" <<< "$line" | head -1 | cut -d= -f2; }
  EXTRA="$(f major),$(f evictions),$(f 'p50<'),$(f 'p99<'),fault=$(f fault)/io=$(f io)/over_limit=$(f over_limit)"
}

attempt_kernel() {
  local out=$1 maj0 maj1 oom0 oom1
  maj0=$(awk '$1 == "pgmajfault" { print $2 }' "$CG/memory.stat")
  oom0=$(awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control")
  # shellcheck disable=SC2046,SC2016
  run_one "$out" sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
    timeout -k 10 "$RUN_TIMEOUT" "$BENCH" $(bench_args "$pattern" "$op")
  maj1=$(awk '$1 == "pgmajfault" { print $2 }' "$CG/memory.stat")
  oom1=$(awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control")
  OOM=$(( ${oom1:-0} > ${oom0:-0} ))
  EXTRA="$((maj1 - maj0)),,,,"
}

# Measures $config for $pattern/$op; a failed attempt is retried (RETRIES times), and
# every attempt is kept in runs.csv and in the notes under the table.
declare -A PPS STATUS NOTE
RETRIES=${BENCH_RETRIES:-1}
measure() {
  local config=$1 key=$1/$pattern/$op attempt out pps populate verify status
  for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
    out=$RESULTS/$config-$pattern-$op.log
    ((attempt == 1)) || out=$RESULTS/$config-$pattern-$op.try$attempt.log
    "attempt_$config" "$out"
    pps=$(sed -n 's/^RESULT .*pages_per_sec=\([0-9]*\).*/\1/p' "$out")
    populate=$(sed -n 's/^POPULATE .* ms=\([0-9]*\).*/\1/p' "$out")
    verify=$(grep -m1 '^VERIFY' "$out" | cut -d' ' -f2 || true)
    if [[ $verify == FAILED ]]; then status=DATA-ERROR
    elif ((RUN_SECS >= RUN_TIMEOUT)); then status=HUNG
    elif ((OOM)); then status="OOM-KILLED"
    elif ((RUN_RC >= 128)); then status="KILLED(signal $((RUN_RC - 128)))"
    elif ((RUN_RC != 0)) || [[ -z $pps || $verify != ok ]]; then status="FAILED(exit $RUN_RC)"
    else status=ok; fi
    PPS[$key]=${pps:-}
    STATUS[$key]=$status
    awk -v c="$config" -v p="$pattern" -v o="$op" '$1 == "T" { print c "," p "," o "," $2 "," $3 }' "$out" >> "$TS_CSV"
    echo "$config,$pattern,$op,$attempt,$status,${pps:-},${populate:-},${verify:-none},${RUN_SECS},$EXTRA" >> "$RUNS_CSV"
    if [[ $status == ok ]]; then
      log "  $config $pattern $op: ${pps} pages/s (populate ${populate} ms, verify $verify)"
      return 0
    fi
    log "  $config $pattern $op: $status after ${RUN_SECS} s (attempt $attempt) — see $out"
    grep -E '^(VERIFY|RESULT)|rror|extmem' "$out" | head -5 >&2 || true
    NOTE[$key]+="${NOTE[$key]:+; }attempt $attempt: $status${pps:+ (measured ${pps} pages/s before it)}"
  done
}

# ---- (d) device ceiling -----------------------------------------------------------
FIO_RANDREAD='' FIO_RANDWRITE='' FIO_SEQREAD=''
if want device && command -v fio >/dev/null; then
  log "device: fio on $WORKDIR ($FS_TYPE on $FS_DEV)"
  FIO_RT=$(awk -v s="$SECS" 'BEGIN { r = s / 2; if (r < 5) r = 5; if (r > 10) r = 10; printf "%d", r }')
  fio_run() {  # name rw bs iodepth -> terse line
    fio --name="$1" --filename="$WORKDIR/fio.dat" --size="$LIMIT_B" --rw="$2" --bs="$3" \
      --iodepth="$4" --ioengine=io_uring --direct=1 --runtime="$FIO_RT" --time_based \
      --group_reporting --output-format=terse --terse-version=3 > "$RESULTS/fio-$1.txt" 2>&1
  }
  # Lay the file out with real data first, so reads hit the device, not unwritten extents.
  fio --name=layout --filename="$WORKDIR/fio.dat" --size="$LIMIT_B" --rw=write --bs=1M \
    --iodepth=8 --ioengine=io_uring --direct=1 > "$RESULTS/fio-layout.txt" 2>&1
  fio_run randread randread 4k "$THREADS" && FIO_RANDREAD=$(awk -F';' '{ printf "%d", $8 }' "$RESULTS/fio-randread.txt")
  fio_run randwrite randwrite 4k "$THREADS" && FIO_RANDWRITE=$(awk -F';' '{ printf "%d", $49 }' "$RESULTS/fio-randwrite.txt")
  fio_run seqread read 1M 8 && FIO_SEQREAD=$(awk -F';' '{ printf "%d", $7 / 1024 }' "$RESULTS/fio-seqread.txt")
  rm -f "$WORKDIR/fio.dat"
  log "  4 KiB random read QD$THREADS: ${FIO_RANDREAD:-?} IOPS; 4 KiB random write QD$THREADS: ${FIO_RANDWRITE:-?} IOPS; 1 MiB sequential read QD8: ${FIO_SEQREAD:-?} MiB/s"
fi

# ---- (c) in RAM -------------------------------------------------------------------
if want ram; then
  log "in-RAM: no limit, no shim"
  for pattern in $PATTERNS; do for op in $OPS; do measure ram; done; done
fi

# ---- (a) extmem -------------------------------------------------------------------
start_daemon() {
  if grep -qv '^Filename' /proc/swaps; then die "kernel swap is on; extmem runs need it off"; fi
  local control=()  # builds with a control plane would otherwise need /run/extmem
  if "$EXTMEMD" --help 2>&1 | grep -q -- '--control PATH'; then control=(--control "$WORKDIR/control.sock"); fi
  "$EXTMEMD" --socket "$WORKDIR/sock" "${control[@]}" --swap "$WORKDIR/extmem.swap" --swap-size "$(human "$SWAP_B")" \
    --stats-interval 0 >> "$RESULTS/extmemd.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 100); do [[ -S $WORKDIR/sock ]] && break; sleep 0.1; done
  [[ -S $WORKDIR/sock ]] || die "extmemd did not start; see $RESULTS/extmemd.log"
}

if want extmem; then
  log "extmem: limit $LIMIT, policy $POLICY, swap file $WORKDIR/extmem.swap"
  : > "$RESULTS/extmemd.log"
  start_daemon
  for pattern in $PATTERNS; do for op in $OPS; do
    measure extmem
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      log "  extmemd died (see $RESULTS/extmemd.log); restarting it"
      wait "$DAEMON_PID" 2>/dev/null || true
      DAEMON_PID=
      start_daemon
    fi
  done; done
  stop_daemon
  rm -f "$WORKDIR/extmem.swap"
fi

# ---- (b) kernel swap --------------------------------------------------------------
if want kernel; then
  log "kernel swap: swapfile $WORKDIR/kernel.swap, cgroup v1 memory.limit_in_bytes=$LIMIT_B"
  CG_ROOT=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
  if [[ -z $CG_ROOT ]]; then
    CG_MOUNTED=$(mktemp -d /tmp/extmem-bench-memcg.XXXXXX)
    mount -t cgroup -o memory none "$CG_MOUNTED" ||
      { rmdir "$CG_MOUNTED"; CG_MOUNTED=; die "no cgroup v1 memory controller (mount failed)"; }
    CG_ROOT=$CG_MOUNTED
  fi
  CG=$CG_ROOT/extmem-bench-$$
  mkdir "$CG"
  echo "$LIMIT_B" > "$CG/memory.limit_in_bytes"
  fallocate -l "$SWAP_B" "$WORKDIR/kernel.swap" 2>/dev/null ||
    dd if=/dev/zero of="$WORKDIR/kernel.swap" bs=1M count=$((SWAP_B >> 20)) status=none
  chmod 600 "$WORKDIR/kernel.swap"
  mkswap "$WORKDIR/kernel.swap" > /dev/null
  KSWAP_ON=1
  swapon "$WORKDIR/kernel.swap"
  for pattern in $PATTERNS; do for op in $OPS; do measure kernel; done; done
  kswap_off
  rm -f "$WORKDIR/kernel.swap"
  rmdir "$CG" && CG=
fi

# ---- table --------------------------------------------------------------------------
cell() {  # pages/s or the failure
  local key=$1
  if [[ -z ${STATUS[$key]:-} ]]; then echo "—"
  elif [[ ${STATUS[$key]} == ok ]]; then echo "${PPS[$key]}${NOTE[$key]:+ ¹}"
  else echo "${STATUS[$key]}"; fi
}
NOTES=$(for key in "${!NOTE[@]}"; do echo "- ¹ $key: ${NOTE[$key]}"; done | sort)
TABLE=$(
  echo "| pattern | op | extmem pages/s | kernel swap pages/s | extmem / kernel | in-RAM pages/s |"
  echo "|---|---|---:|---:|---:|---:|"
  for pattern in $PATTERNS; do for op in $OPS; do
    e=$(cell "extmem/$pattern/$op"); k=$(cell "kernel/$pattern/$op"); r=$(cell "ram/$pattern/$op")
    ratio=$(awk -v e="${e% ¹}" -v k="${k% ¹}" 'BEGIN { if (e ~ /^[0-9]+$/ && k ~ /^[0-9]+$/ && k > 0) printf "%.2f", e / k; else print "—" }')
    echo "| $pattern | $op | $e | $k | $ratio | $r |"
  done; done
)
if [[ -n $FIO_RANDREAD$FIO_SEQREAD ]]; then
  DEVICE_LINE="fio on the same filesystem (O_DIRECT, io_uring, ${FIO_RT:-?} s each): 4 KiB random read QD$THREADS **${FIO_RANDREAD:-n/a} IOPS**, 4 KiB random write QD$THREADS ${FIO_RANDWRITE:-n/a} IOPS, 1 MiB sequential read QD8 **${FIO_SEQREAD:-n/a} MiB/s** (= $(awk -v m="${FIO_SEQREAD:-0}" 'BEGIN { printf "%d", m * 256 }') pages/s)."
else
  DEVICE_LINE="not measured in this run."
fi
DETAILS=$(
  echo "| config | pattern | op | attempt | status | pages/s | populate ms | verify | run s | major faults | evictions | fault p50 ≤ µs | fault p99 ≤ µs | errors |"
  echo "|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|"
  tail -n +2 "$RUNS_CSV" | awk -F, '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }'
)
echo
echo "$TABLE"
[[ -z $NOTES ]] || { echo; echo "$NOTES"; }
echo
echo "$DEVICE_LINE"
echo
echo "details: $RUNS_CSV; throughput over time: $TS_CSV; logs: $RESULTS"

# ---- docs/PERFORMANCE.md ---------------------------------------------------------------
if [[ -n $DOC ]]; then
  CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 2^20 }' /proc/meminfo)
  BLOCK=$(printf '%s\n' \
    "<!-- BEGIN RESULTS (written by bench/run.sh; edits here are overwritten) -->" \
    "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')$( ((QUICK)) && echo " (--quick)")" \
    "" \
    "- machine: $(nproc) CPUs ($CPU), $MEM RAM, kernel $(uname -r)" \
    "- filesystem for both swap areas: $FS_TYPE on $FS_DEV (mounted at $FS_MNT), directory $WORKDIR" \
    "- extmem: commit $GIT_REV, policy $POLICY, \`extmemd --swap $WORKDIR/extmem.swap --swap-size $(human "$SWAP_B")\`, \`EXTMEM_DRAM=$LIMIT_B\`, kernel swap off" \
    "- kernel swap: swapfile of $(human "$SWAP_B") on the same filesystem, cgroup v1 \`memory.limit_in_bytes=$LIMIT_B\`, swappiness $(cat /proc/sys/vm/swappiness)" \
    "- workload: \`extmem-mmapbench --size $SIZE_B --threads $THREADS --pattern P --op O --seconds $SECS --verify\`: working set $SIZE, limit $LIMIT, populate (every page written once, not zero) then $SECS s measured" \
    "- command: \`bench/run.sh $ARGS_TEXT\`" \
    "" \
    "$TABLE" \
    "${NOTES:+
$NOTES
}" \
    "Device ceiling: $DEVICE_LINE" \
    "" \
    "<details><summary>Per-run details (extmem counters at the end of the measurement; kernel major faults over the whole run)</summary>" \
    "" \
    "$DETAILS" \
    "" \
    "</details>" \
    "<!-- END RESULTS -->")
  mkdir -p "$(dirname "$DOC")"
  if [[ -f $DOC ]] && grep -q '^<!-- BEGIN RESULTS' "$DOC" && grep -q '^<!-- END RESULTS' "$DOC"; then
    BLOCK="$BLOCK" awk '
      /^<!-- BEGIN RESULTS/ { print ENVIRON["BLOCK"]; skip = 1; next }
      /^<!-- END RESULTS/ { skip = 0; next }
      !skip { print }' "$DOC" > "$DOC.tmp" && mv "$DOC.tmp" "$DOC"
  else
    { [[ -f $DOC ]] && cat "$DOC" && echo || printf '# Performance\n\n'; echo "$BLOCK"; } > "$DOC.tmp"
    mv "$DOC.tmp" "$DOC"
  fi
  log "wrote the results into $DOC"
fi

failed=0
for k in "${!STATUS[@]}"; do [[ ${STATUS[$k]} == ok ]] || failed=1; done
if ((failed)); then log "some runs failed: see the table"; exit 3; fi
exit 0
