#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly (traps, attempt_$config)
# bench/run.sh — the issue #5 figures: extmem against kernel swap, the device and in-RAM,
# in one run on one device (run as root).
#
# Runs extmem-mmapbench for every pattern x op with a working set larger than the DRAM
# limit (2x by default) under:
#   extmem  extmemd (started here) + libextmem.so; kernel swap off
#   kernel  a swapfile on the same filesystem + a cgroup v1 memory limit
#   in-RAM  no limit, no shim (the ceiling)
#   device  fio on the same filesystem, O_DIRECT, io_uring: 1 MiB sequential read, 1 MiB
#           sequential read+write (50/50), 4 KiB random read IOPS at QD = threads; run
#           before and after the systems, the better of the two is the ceiling
# plus a working set within the limit with and without the shim, first touch (populate)
# of each, the daemon's memory per managed page, and PageRank (extmem-pagerank, if built).
# Swap I/O rates during the measurement: extmem's from its client's counters, kernel
# swap's from /proc/vmstat pswpin/pswpout (machine-wide; the bench swapfile is the only
# swap area on); both against fio's, and for uniform random read (and hot set rmw, read
# side) the ratio to kernel swap that the device allows: fio IOPS / kernel swap-ins/s.
# Prints the issue's target table (measured ratio, pass/miss), writes it with the machine
# and the commands into docs/PERFORMANCE.md between the RESULTS markers, and plots PNGs.
#
# usage: bench/run.sh [--quick] [options]
#   --quick            short run: limit 128M, size 256M, 3 s per run (~2-4 min)
#   --limit SIZE       DRAM limit (default 1G)                      env BENCH_LIMIT
#   --size SIZE        working set (default 2 x limit)              env BENCH_SIZE
#   --fit-size SIZE    working set of the within-limit runs (default limit / 2)
#   --seconds S        measured seconds per run (default 20)        env BENCH_SECONDS
#   --threads N        benchmark threads (default 2)                env BENCH_THREADS
#   --policy P         extmem policy, clock or fifo (default clock)  env BENCH_POLICY
#   --patterns "..."   default "seq window random hotset"           env BENCH_PATTERNS
#   --ops "..."        default "read rmw"                           env BENCH_OPS
#   --configs "..."    any of "device ram extmem kernel" (default all) env BENCH_CONFIGS
#   --pagerank "ARGS"  bench/pagerank.sh options for the PageRank stage, which runs that
#                      script last; "" skips it (default: its defaults; --quick:
#                      "--vertices 100000 --avg-degree 64 --iterations 4")  env BENCH_PAGERANK
#   --pagerank-policies "..."  extmem policies for PageRank (default "clock frontier")
#   --dir DIR          directory for both swap files and the fio file; a new directory
#                      under /var/tmp by default                    env BENCH_DIR
#   --results DIR      logs, CSV and the tables (default DIR/results)
#   --doc FILE         Markdown file to update (default docs/PERFORMANCE.md; "" for none)
#   --plots DIR        where the PNG plots go (default docs/; "" for none)
#   --build-dir DIR    the extmem build to use (default build/)     env BUILD_DIR
#   --no-build         use the binaries in the build directory as they are (no cmake/ninja)
#   --rev TEXT         how to name the extmem version in the doc (default: git commit,
#                      "+local changes" when daemon/shim/kernel/proto differ from it)
#
# Exit status: 0 all runs passed; 3 some run failed (see the table; DATA-ERROR means a
# run read wrong data); 1 the harness itself failed.
#
# The machine is left as it was found, also on Ctrl-C or failure: the daemon is stopped,
# the bench swapfile is swapped off, the cgroup removed (and the cgroup hierarchy
# unmounted if this script mounted it), swap areas that were on are swapped on again,
# and the swap and fio files are deleted. Logs stay in the results directory.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}

# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"

# ---- options ----------------------------------------------------------------------
LIMIT=${BENCH_LIMIT:-}
SIZE=${BENCH_SIZE:-}
FIT_SIZE=
SECS=${BENCH_SECONDS:-}
THREADS=${BENCH_THREADS:-2}
POLICY=${BENCH_POLICY:-clock}
PATTERNS=${BENCH_PATTERNS:-seq window random hotset}
OPS=${BENCH_OPS:-read rmw}
CONFIGS=${BENCH_CONFIGS:-device ram extmem kernel}
PAGERANK_ARGS=${BENCH_PAGERANK-unset}
PAGERANK_POLICIES="clock frontier"
WORKDIR=${BENCH_DIR:-}
RESULTS=
DOC=$REPO/docs/PERFORMANCE.md
PLOTS=$REPO/docs
BUILD_FIRST=1
REV=${BENCH_REV:-}
QUICK=0
ARGS_TEXT=$(printf '%q ' "$@"); ARGS_TEXT=${ARGS_TEXT% }
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --limit) LIMIT=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --fit-size) FIT_SIZE=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --policy) POLICY=$2; shift ;;
    --patterns) PATTERNS=$2; shift ;;
    --ops) OPS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --pagerank) PAGERANK_ARGS=$2; shift ;;
    --pagerank-policies) PAGERANK_POLICIES=$2; shift ;;
    --dir) WORKDIR=$2; shift ;;
    --results) RESULTS=$2; shift ;;
    --doc) DOC=$2; shift ;;
    --plots) PLOTS=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --no-build) BUILD_FIRST=0 ;;
    --rev) REV=$2; shift ;;
    -h|--help) sed -n '3,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
if ((QUICK)); then
  LIMIT=${LIMIT:-128M}; SECS=${SECS:-3}
else
  LIMIT=${LIMIT:-1G}; SECS=${SECS:-20}
fi

# "" skips PageRank; unset takes bench/pagerank.sh's defaults (a smaller graph if --quick).
PAGERANK_ON=1
if [[ $PAGERANK_ARGS == unset ]]; then
  PAGERANK_ARGS=
  ((QUICK == 0)) || PAGERANK_ARGS="--vertices 100000 --avg-degree 64 --iterations 4"
elif [[ -z $PAGERANK_ARGS ]]; then
  PAGERANK_ON=0
fi

human() { awk -v b="$1" 'BEGIN { if (b >= 2^30 && b % 2^30 == 0) printf "%dG", b/2^30;
  else if (b >= 2^20) printf "%dM", b/2^20; else printf "%d", b }'; }

LIMIT_B=$(to_bytes "$LIMIT")
if [[ -z $SIZE ]]; then SIZE_B=$((2 * LIMIT_B)); else SIZE_B=$(to_bytes "$SIZE"); fi
if [[ -z $FIT_SIZE ]]; then FIT_B=$((LIMIT_B / 2)); else FIT_B=$(to_bytes "$FIT_SIZE"); fi
((FIT_B < LIMIT_B)) || die "--fit-size must be below the limit"
SIZE=$(human "$SIZE_B"); LIMIT=$(human "$LIMIT_B"); FIT_SIZE=$(human "$FIT_B")
# Both swap areas hold the whole working set twice over, at least 4 GiB.
SWAP_B=$((2 * SIZE_B)); ((SWAP_B >= (4 << 30))) || SWAP_B=$((4 << 30))
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "--threads needs a positive number"
[[ $SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds needs a number"
case $POLICY in clock|fifo) ;; *) die "--policy needs clock or fifo" ;; esac
# Eight throughput samples per run at least, one a second at most.
REPORT_MS=$(awk -v s="$SECS" 'BEGIN { r = s * 1000 / 8; if (r < 250) r = 250; if (r > 1000) r = 1000; printf "%d", r }')
TICKS=$(awk -v s="$SECS" -v r="$REPORT_MS" 'BEGIN { n = s * 1000 / r; printf "%d", (n == int(n)) ? n : int(n) + 1 }')
# The within-limit runs use one pattern: uniform random read-modify-write touches every
# page, so any per-page cost of the shim's arena shows.
FIT_PATTERN=random FIT_OP=rmw

require_root

# ---- state for cleanup (bench/lib.sh has the rest) --------------------------------
BENCH_PID=
WORKDIR_CREATED=0

cleanup_workload() {  # the benchmark, with the timeout around it (its own process group)
  [[ -n $BENCH_PID ]] || return 0
  kill -TERM -- "-$BENCH_PID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 -- "-$BENCH_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$BENCH_PID" 2>/dev/null
  wait "$BENCH_PID" 2>/dev/null
}
cleanup_finish() {  # status
  if [[ -n $WORKDIR ]]; then
    rm -f "$WORKDIR/extmem.swap" "$WORKDIR/fio.dat" "$WORKDIR/sock" "$WORKDIR/control.sock"
    rm -rf "${WORKDIR:?}/bin"
    # pagerank.sh keeps its logs next to its swap file: they belong with the results.
    if [[ -d $WORKDIR/pagerank/results && -n $RESULTS ]]; then
      rm -rf "$RESULTS/pagerank-logs"
      mv "$WORKDIR/pagerank/results" "$RESULTS/pagerank-logs" && rmdir "$WORKDIR/pagerank"
    fi
    ((WORKDIR_CREATED)) && [[ $RESULTS != "$WORKDIR"/* ]] && rmdir "$WORKDIR" 2>/dev/null
  fi
  (($1 == 0)) || log "failed or interrupted (status $1); machine state restored; logs in ${RESULTS:-?}"
}
install_cleanup

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
  ninja -C "$BUILD" extmemd extmem extmemctl extmem-mmapbench >/dev/null
  ninja -C "$BUILD" extmem-pagerank >/dev/null 2>&1 || true  # once bench/pagerank.cpp is in
fi
# The binaries are copied so that a rebuild during the run cannot change them.
mkdir -p "$WORKDIR/bin"
cp "$BUILD/daemon/extmemd" "$WORKDIR/bin/extmemd"
cp -L "$BUILD/shim/libextmem.so" "$WORKDIR/bin/libextmem.so"
cp "$BUILD/bench/extmem-mmapbench" "$WORKDIR/bin/"
CTL=
if [[ -x $BUILD/ctl/extmemctl ]]; then cp "$BUILD/ctl/extmemctl" "$WORKDIR/bin/"; CTL=$WORKDIR/bin/extmemctl; fi
PAGERANK=
if [[ -x $BUILD/bench/extmem-pagerank ]]; then cp "$BUILD/bench/extmem-pagerank" "$WORKDIR/bin/"; PAGERANK=$WORKDIR/bin/extmem-pagerank; fi
EXTMEMD=$WORKDIR/bin/extmemd
SHIM=$WORKDIR/bin/libextmem.so
BENCH=$WORKDIR/bin/extmem-mmapbench

install_tool() {  # command package
  command -v "$1" >/dev/null && return 0
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
    log "warning: $2 unavailable"
}
want device && install_tool fio fio
[[ -z $PLOTS ]] || install_tool gnuplot gnuplot-nox

# Swap areas that are on now are switched off for the run and back on at the end.
suspend_other_swaps

# Other work on the machine slows extmem (a user-space fault handler waits for a CPU) more
# than the kernel; the load average goes into the record.
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
FS_TYPE=$(df -T "$WORKDIR" | awk 'NR == 2 { print $2 }')
FS_DEV=$(df -T "$WORKDIR" | awk 'NR == 2 { print $1 }')
FS_MNT=$(df -T "$WORKDIR" | awk 'NR == 2 { print $7 }')
if [[ -n $REV ]]; then
  GIT_REV=$REV
else
  GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$REPO" diff --quiet HEAD -- daemon shim kernel proto 2>/dev/null || GIT_REV="$GIT_REV+local changes"
fi

TS_CSV=$RESULTS/timeseries.csv
RUNS_CSV=$RESULTS/runs.csv
echo "config,pattern,op,t_ms,pages_per_sec" > "$TS_CSV"
echo "config,pattern,op,size,attempt,status,pages_per_sec,populate_pages_per_sec,verify,run_seconds,majfaults,evictions,fault_p50_us,fault_p99_us,errors,swap_read_MiB_per_s,swap_written_MiB_per_s,managed_bytes,metadata_bytes,daemon_rss_KiB" > "$RUNS_CSV"

bench_args() {  # pattern op size
  echo --size "$3" --threads "$THREADS" --pattern "$1" --op "$2" --seconds "$SECS" \
    --report-interval "$REPORT_MS" --verify
}

# The counters a run's swap I/O rates come from, one line "ns bytes_read bytes_written ..."
# (io_rates takes the difference of two). snapshot_client: "... resident swapped
# daemon_rss_KiB" for client $1, from the control plane and /proc (empty without a
# control plane). snapshot_vmstat: the machine's pswpin/pswpout in bytes (kernel swap).
snapshot_client() {
  [[ -n $CTL && -n $1 ]] || return 0
  local json t rss
  t=$(date +%s%N)
  json=$("$CTL" --control "$WORKDIR/control.sock" --timeout 2 --json show "$1" 2>/dev/null) || return 0
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null)
  j() { grep -oE "\"$1\": ?\"?[0-9]+" <<< "$json" | head -1 | grep -oE '[0-9]+$'; }
  echo "$t $(j bytes_read) $(j bytes_written) $(j resident_bytes) $(j swapped_bytes) ${rss:-0}"
}
snapshot_vmstat() {
  echo "$(date +%s%N) $(($(vmstat_count pswpin) * 4096)) $(($(vmstat_count pswpout) * 4096))"
}
# "read,written" MiB/s between the snapshots SNAP_FIRST and SNAP_LAST, else ",".
io_rates() {
  if [[ -n $SNAP_LAST && $SNAP_LAST != "$SNAP_FIRST" ]]; then
    awk -v a="$SNAP_FIRST" -v b="$SNAP_LAST" 'BEGIN { split(a, x, " "); split(b, y, " ");
      s = (y[1] - x[1]) / 1e9; printf "%.1f,%.1f", (y[2] - x[2]) / s / 2^20, (y[3] - x[3]) / s / 2^20 }'
  else
    echo ","
  fi
}

# Runs one benchmark command ("$@") in the background, with its output in $out. With a
# snapshot function (snapshot_client, snapshot_vmstat; "" for none), takes a snapshot of
# the counters at each interval line but the last (SNAP_FIRST, SNAP_LAST: the swap I/O
# rates come from the difference; the last line is followed by --verify's own reads).
# With the daemon up, sends SIGUSR1 to extmemd when the measurement ends, so the daemon
# logs its stats then. Sets RUN_RC and RUN_SECS.
run_one() {  # out snapshot command...
  local out=$1 snap=$2; shift 2
  local ended=0 t0=$SECONDS seen=0 n pid=
  SNAP_FIRST="" SNAP_LAST=""
  # Its own process group (setsid), so that cleanup can stop timeout and the benchmark.
  setsid "$@" > "$out" 2>&1 &
  BENCH_PID=$!
  RUN_RC=0
  {  # stderr off: bash's own "Killed" notice for the job (the status is reported below)
    while kill -0 "$BENCH_PID"; do
      if ((!ended)) && [[ -n $DAEMON_PID$snap ]]; then
        if grep -q '^RESULT' "$out"; then
          [[ -z $DAEMON_PID ]] || kill -USR1 "$DAEMON_PID" || true
          ended=1
        elif [[ -n $snap ]]; then
          n=$(grep -c '^T ' "$out" || true)
          if ((n > seen && n < TICKS)); then
            seen=$n
            [[ -n $pid ]] || pid=$(sed -n 's/^BENCH pid=\([0-9]*\).*/\1/p' "$out")
            SNAP_LAST=$("$snap" "$pid")
            [[ -n $SNAP_FIRST ]] || SNAP_FIRST=$SNAP_LAST
          fi
        fi
      fi
      sleep 0.1
    done
    wait "$BENCH_PID" || RUN_RC=$?
  } 2>/dev/null
  RUN_SECS=$((SECONDS - t0))
  BENCH_PID=
}

run_timeout() {  # size: populate and verify at 1 MiB/s or better each, else it hung
  awk -v s="$SECS" -v b="$1" 'BEGIN { printf "%d", s + 60 + b / 2^20 / 4 }'
}

# One attempt of each configuration: runs it into $1 and sets EXTRA (the detail columns
# majfaults..daemon_rss_KiB) and OOM (1 when the OOM killer fired).
attempt_ram() {
  # shellcheck disable=SC2046
  run_one "$1" "" timeout -k 10 "$(run_timeout "$size")" "$BENCH" $(bench_args "$pattern" "$op" "$size")
  EXTRA=",,,,,,,,," OOM=0
}

# A size as the daemon logs it ("963.2 KiB") in bytes.
log_size_bytes() {
  awk -v v="$1" -v u="$2" 'BEGIN { m = 1; if (u == "KiB") m = 2^10; else if (u == "MiB") m = 2^20;
    else if (u == "GiB") m = 2^30; else if (u == "TiB") m = 2^40; printf "%d", v * m }'
}

attempt_extmem() {
  local out=$1 pid line rates managed="" meta="" rss=""
  # shellcheck disable=SC2046
  run_one "$out" snapshot_client timeout -k 10 "$(run_timeout "$size")" env LD_PRELOAD="$SHIM" \
    EXTMEM_SOCKET="$WORKDIR/sock" EXTMEM_DRAM="$LIMIT_B" EXTMEM_POLICY="$POLICY" \
    EXTMEM_REQUIRED=1 "$BENCH" $(bench_args "$pattern" "$op" "$size")
  EXTRA=",,,,,,,,," OOM=0
  pid=$(sed -n 's/^BENCH pid=\([0-9]*\).*/\1/p' "$out")
  [[ -n $pid ]] || return 0
  sleep 0.3  # the daemon logs the client's final line when it sees it leave
  # Counters at the end of the measurement (SIGUSR1), else at exit.
  line=$(grep -E "stats: pid=$pid " "$RESULTS/extmemd.log" | tail -1 || true)
  [[ -n $line ]] || line=$(grep -E "client $pid (disconnected|exited)" "$RESULTS/extmemd.log" | tail -1 || true)
  f() { grep -oE "[( ]$1=[^ )]*" <<< "$line" | head -1 | cut -d= -f2; }
  if [[ $line =~ metadata=([0-9.]+)\ ([KMGT]?i?B) ]]; then
    meta=$(log_size_bytes "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  fi
  rates=$(io_rates)
  if [[ -n $SNAP_LAST ]]; then
    read -r _ _ _ res swp rss <<< "$SNAP_LAST"
    managed=$((res + swp))
  fi
  EXTRA="$(f major),$(f evictions),$(f 'p50<'),$(f 'p99<'),fault=$(f fault)/io=$(f io)/over_limit=$(f over_limit),$rates,$managed,$meta,$rss"
}

# Kernel swap's read/written rates are the machine's pswpin/pswpout during the measurement:
# machine-wide, but the bench swapfile is the only swap area on during the harness.
attempt_kernel() {
  local out=$1 maj0 maj1 oom0 oom1
  maj0=$(memcg_stat pgmajfault)
  oom0=$(awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control")
  # shellcheck disable=SC2046
  run_one "$out" snapshot_vmstat "${IN_MEMCG[@]}" timeout -k 10 "$(run_timeout "$size")" "$BENCH" $(bench_args "$pattern" "$op" "$size")
  maj1=$(memcg_stat pgmajfault)
  oom1=$(awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control")
  OOM=$(( ${oom1:-0} > ${oom0:-0} ))
  if grep -v '^Filename' /proc/swaps | grep -qvF "$KSWAP_FILE"; then
    log "  warning: another swap area is on: its swapping counts in kernel swap's read/written rates"
  fi
  EXTRA="$((maj1 - maj0)),,,,,$(io_rates),,,"
}

# Measures config $1 on pattern $2, op $3, working set $4 bytes, under the name $5 (the
# key's second half). A failed attempt is retried (RETRIES times), and every attempt is
# kept in runs.csv and in the notes under the table.
declare -A PPS POP STATUS NOTE RD WR MANAGED META RSS
RETRIES=${BENCH_RETRIES:-1}
measure() {
  local config=$1 pattern=$2 op=$3 size=$4 name=$5
  local key=$config/$name attempt out pps populate verify status file=${5//\//-}
  for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
    out=$RESULTS/$config-$file.log
    ((attempt == 1)) || out=$RESULTS/$config-$file.try$attempt.log
    "attempt_$config" "$out"
    pps=$(sed -n 's/^RESULT .*pages_per_sec=\([0-9]*\).*/\1/p' "$out")
    populate=$(sed -n 's/^POPULATE .* pages_per_sec=\([0-9]*\).*/\1/p' "$out")
    verify=$(grep -m1 '^VERIFY' "$out" | cut -d' ' -f2 || true)
    if [[ $verify == FAILED ]]; then status=DATA-ERROR
    elif ((RUN_SECS >= $(run_timeout "$size"))); then status=HUNG
    elif ((OOM)); then status="OOM-KILLED"
    elif ((RUN_RC >= 128)); then status="KILLED(signal $((RUN_RC - 128)))"
    elif ((RUN_RC != 0)) || [[ -z $pps || $verify != ok ]]; then status="FAILED(exit $RUN_RC)"
    else status=ok; fi
    PPS[$key]=${pps:-}
    POP[$key]=${populate:-}
    STATUS[$key]=$status
    local rd wr managed meta rss
    IFS=, read -r _ _ _ _ _ rd wr managed meta rss <<< "$EXTRA"
    # shellcheck disable=SC2034  # RD and WR are read through ok_field's nameref
    RD[$key]=$rd WR[$key]=$wr MANAGED[$key]=$managed META[$key]=$meta RSS[$key]=$rss
    awk -v c="$config" -v p="$name" '$1 == "T" { sub("/", ",", p); print c "," p "," $2 "," $3 }' "$out" >> "$TS_CSV"
    echo "$config,${name%/*},${name#*/},$size,$attempt,$status,${pps:-},${populate:-},${verify:-none},${RUN_SECS},$EXTRA" >> "$RUNS_CSV"
    if [[ $status == ok ]]; then
      log "  $config $name: ${pps} pages/s (populate ${populate} pages/s, verify $verify)"
      return 0
    fi
    log "  $config $name: $status after ${RUN_SECS} s (attempt $attempt) — see $out"
    grep -E '^(VERIFY|RESULT)|rror|extmem' "$out" | head -5 >&2 || true
    NOTE[$key]+="${NOTE[$key]:+; }attempt $attempt: $status${pps:+ (measured ${pps} pages/s before it)}"
  done
}

measure_all() {  # config: every pattern x op beyond the limit, then the within-limit run
  local pattern op
  for pattern in $PATTERNS; do for op in $OPS; do
    measure "$1" "$pattern" "$op" "$SIZE_B" "$pattern/$op"
    [[ $1 != extmem ]] || ensure_daemon
  done; done
  [[ $1 == kernel ]] || measure "$1" "$FIT_PATTERN" "$FIT_OP" "$FIT_B" "fit/$FIT_OP"
}

# ---- (d) device ceiling -----------------------------------------------------------
# fio runs at the start and again after the systems' runs: a shared VM's device moves
# (its 1 MiB sequential read gave 1.0 and 1.7 GB/s within an hour), and the ceiling is
# the better of the two, so a system is never judged against the device's worse moment.
FIO_RANDREAD='' FIO_RANDWRITE='' FIO_SEQREAD='' FIO_SEQRW=''
FIO_STARTS='' FIO_ENDS=''
FIO_RT=$(awk -v s="$SECS" 'BEGIN { r = s / 2; if (r < 1) r = 1; if (r > 10) r = 10; printf "%d", r }')
fio_run() {  # name rw bs iodepth [options] -> terse line in $RESULTS/fio-name.txt
  local name=$1 rw=$2 bs=$3 qd=$4; shift 4
  fio --name="$name" --filename="$WORKDIR/fio.dat" --size="$LIMIT_B" --rw="$rw" --bs="$bs" \
    --iodepth="$qd" --ioengine=io_uring --direct=1 --runtime="$FIO_RT" --time_based \
    --group_reporting --output-format=terse --terse-version=3 "$@" > "$RESULTS/fio-$name.txt" 2>&1
}
higher() { [[ -z $1 ]] && { echo "$2"; return; }; [[ -z $2 ]] && { echo "$1"; return; }; echo $(($1 > $2 ? $1 : $2)); }
measure_device() {  # start|end: runs the four fio jobs, keeps the better figure of each
  local when=$1 rr='' rw='' sr='' srw=''
  # Lay the file out with real data first, so reads hit the device, not unwritten extents.
  fio --name=layout --filename="$WORKDIR/fio.dat" --size="$LIMIT_B" --rw=write --bs=1M \
    --iodepth=8 --ioengine=io_uring --direct=1 > "$RESULTS/fio-layout-$when.txt" 2>&1
  # Terse v3: field 7 read KiB/s, 8 read IOPS, 48 write KiB/s, 49 write IOPS.
  fio_run "randread-$when" randread 4k "$THREADS" && rr=$(awk -F';' '{ printf "%d", $8 }' "$RESULTS/fio-randread-$when.txt")
  fio_run "randwrite-$when" randwrite 4k "$THREADS" && rw=$(awk -F';' '{ printf "%d", $49 }' "$RESULTS/fio-randwrite-$when.txt")
  fio_run "seqread-$when" read 1M 8 && sr=$(awk -F';' '{ printf "%d", $7 / 1024 }' "$RESULTS/fio-seqread-$when.txt")
  fio_run "seqrw-$when" rw 1M 8 --rwmixread=50 && srw=$(awk -F';' '{ printf "%d", ($7 + $48) / 1024 }' "$RESULTS/fio-seqrw-$when.txt")
  rm -f "$WORKDIR/fio.dat"
  log "  $when: 4 KiB random read QD$THREADS: ${rr:-?} IOPS; 4 KiB random write QD$THREADS: ${rw:-?} IOPS; 1 MiB sequential read QD8: ${sr:-?} MiB/s; 1 MiB sequential read+write QD8: ${srw:-?} MiB/s"
  local line="${rr:-n/a} / ${rw:-n/a} IOPS, ${sr:-n/a} / ${srw:-n/a} MiB/s"
  if [[ $when == start ]]; then FIO_STARTS=$line; else FIO_ENDS=$line; fi
  FIO_RANDREAD=$(higher "$FIO_RANDREAD" "$rr") FIO_RANDWRITE=$(higher "$FIO_RANDWRITE" "$rw")
  FIO_SEQREAD=$(higher "$FIO_SEQREAD" "$sr") FIO_SEQRW=$(higher "$FIO_SEQRW" "$srw")
}
WANT_DEVICE=''
if want device && command -v fio >/dev/null; then
  WANT_DEVICE=1
  log "device: fio on $WORKDIR ($FS_TYPE on $FS_DEV), now and after the systems' runs"
  measure_device start
fi

# ---- (c) in RAM -------------------------------------------------------------------
if want ram; then
  log "in-RAM: no limit, no shim"
  measure_all ram
fi

# ---- (a) extmem -------------------------------------------------------------------
start_daemon() {
  # Someone else may have kernel swap on for a while (a shared machine): wait a little.
  local waited=0
  while kernel_swap_on; do
    ((waited < 300)) || die "kernel swap is on (not by this script); extmem runs need it off"
    ((waited > 0)) || log "kernel swap is on (not by this script): waiting up to 300 s for it to go off"
    sleep 5; waited=$((waited + 5))
  done
  local control=()  # builds with a control plane would otherwise need /run/extmem
  if "$EXTMEMD" --help 2>&1 | grep -q -- '--control PATH'; then control=(--control "$WORKDIR/control.sock"); fi
  start_extmemd "$WORKDIR/sock" "$RESULTS/extmemd.log" "${control[@]}" --swap "$WORKDIR/extmem.swap" \
    --swap-size "$(human "$SWAP_B")" --stats-interval 0
}
ensure_daemon() {
  kill -0 "$DAEMON_PID" 2>/dev/null && return 0
  log "  extmemd died (see $RESULTS/extmemd.log); restarting it"
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
  start_daemon
}

DAEMON_IDLE_RSS=
if want extmem; then
  log "extmem: limit $LIMIT, policy $POLICY, swap file $WORKDIR/extmem.swap"
  : > "$RESULTS/extmemd.log"
  start_daemon
  sleep 0.5
  DAEMON_IDLE_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")
  measure_all extmem
  stop_extmemd
  rm -f "$WORKDIR/extmem.swap"
fi

# ---- (b) kernel swap --------------------------------------------------------------
if want kernel; then
  log "kernel swap: swapfile $WORKDIR/kernel.swap, cgroup v1 memory.limit_in_bytes=$LIMIT_B"
  memcg_create extmem-bench "$LIMIT_B"
  kswap_on "$WORKDIR/kernel.swap" "$SWAP_B"
  measure_all kernel
  kswap_off
  memcg_remove
fi

if [[ -n $WANT_DEVICE ]]; then
  log "device: fio again"
  measure_device end
fi

# ---- PageRank: bench/pagerank.sh on the same binaries, once the other runs are done --
PR_FAILED=0
if ((!PAGERANK_ON)); then
  PR_TABLE="pagerank: skipped (--pagerank \"\")"
elif [[ -z $PAGERANK ]]; then
  PR_TABLE="pagerank: not built"
else
  pr_configs=ram
  for c in extmem kernel; do if want "$c"; then pr_configs+=" $c"; fi; done
  log "pagerank: bench/pagerank.sh --threads $THREADS $PAGERANK_ARGS (configs: $pr_configs)"
  pr_rc=0
  # shellcheck disable=SC2086
  "$REPO/bench/pagerank.sh" --bin-dir "$WORKDIR/bin" --dir "$WORKDIR/pagerank" \
    --threads "$THREADS" --policies "$PAGERANK_POLICIES" --configs "$pr_configs" $PAGERANK_ARGS \
    > "$RESULTS/pagerank.md" 2> "$RESULTS/pagerank.log" || pr_rc=$?
  # 3: some run failed or read wrong data; the table says which.
  if ((pr_rc == 0 || pr_rc == 3)); then
    PR_TABLE=$(sed -n '/^PageRank /,/^logs: /p' "$RESULTS/pagerank.md" | sed '$d')
  else
    PR_TABLE="pagerank: FAILED (exit $pr_rc; see $RESULTS/pagerank.log)"
  fi
  ((pr_rc == 0)) || PR_FAILED=1
  log "$PR_TABLE"
fi

# ---- tables -----------------------------------------------------------------------
# A passed run's figure, else nothing (and status 0: these run under set -e).
ok_pps() { if [[ ${STATUS[$1]:-} == ok ]]; then echo "${PPS[$1]}"; fi; }
ok_pop() { if [[ ${STATUS[$1]:-} == ok ]]; then echo "${POP[$1]}"; fi; }
ok_field() {  # array key: the value when the run passed
  local -n arr=$1
  if [[ ${STATUS[$2]:-} == ok ]]; then echo "${arr[$2]:-}"; fi
}
pps_or_missing() { local v; v=$(ok_pps "$1"); echo "${v:-?}"; }  # gnuplot's missing value
# What a missing figure cell says: the failed run's status, else "—".
why_missing() { local s; for k in "$@"; do s=${STATUS[$k]:-}; [[ -n $s && $s != ok ]] && { echo "$s ($k)"; return; }; done; echo "—"; }
# Sets CELL to "value (target OP threshold)" and VERDICT to pass|miss; without a value
# CELL is the reason and VERDICT "—".
CELL="" VERDICT=""
judge() {  # value unit op threshold reason
  local v=$1 unit=$2 op=$3 th=$4 sign=≥
  if [[ -z $v ]]; then CELL=$5 VERDICT="—"; return; fi
  [[ $op == ">=" ]] || sign=≤
  VERDICT=$(awk -v v="$v" -v t="$th" -v op="$op" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "pass" : "miss" }')
  CELL="$v$unit (target $sign $th$unit)"
}
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (a != "" && b != "" && b > 0) printf f, a / b }'; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

vs_kernel() {  # pattern op
  local e k
  e=$(ok_pps "extmem/$1/$2"); k=$(ok_pps "kernel/$1/$2")
  judge "$(div "$e" "$k")" x ">=" "$3" "$(why_missing "extmem/$1/$2" "kernel/$1/$2")"
}
row() {  # label kernel-cell kernel-verdict device-cell device-verdict
  echo "| $1 | $2 | $3 | $4 | $5 |"
}

vs_kernel seq read 2.0; SEQR_K=$CELL SEQR_KV=$VERDICT
# Device ratios in percent: a system's swap I/O rate during the measurement / fio's
# (extmem's from its client's counters, kernel swap's from pswpin/pswpout).
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.0f", 100 * a / b }'; }
kernel_pct() { local p; p=$(pct "$1" "$2"); [[ -z $p ]] || echo "; kernel swap $p%"; }  # kernel-rate fio-rate
read_plus_written() { awk -v r="$(ok_field RD "$1")" -v w="$(ok_field WR "$1")" 'BEGIN { if (r != "" && w != "") print r + w }'; }
swapins_per_sec() { awk -v r="$(ok_field RD "$1")" 'BEGIN { if (r != "") printf "%.0f", r * 256 }'; }  # 4 KiB pages
# The most the device lets extmem reach against kernel swap at the same miss ratio
# (derived): fio's 4 KiB random read IOPS at QD = threads over kernel swap's swap-ins/s.
device_allows() {  # pattern/op [qualifier]
  local b; b=$(div "$FIO_RANDREAD" "$(swapins_per_sec "kernel/$1")")
  [[ -z $b ]] || echo "; device allows ≤ ${b}x${2:-} (derived: fio IOPS / kernel swap-ins/s)"
}
judge "$(pct "$(ok_field RD extmem/seq/read)" "$FIO_SEQREAD")" "%" ">=" 90 "$(why_missing extmem/seq/read)"
SEQR_D=$CELL SEQR_DV=$VERDICT SEQR_DK=$(kernel_pct "$(ok_field RD kernel/seq/read)" "$FIO_SEQREAD")
vs_kernel seq rmw 1.4; SEQW_K=$CELL SEQW_KV=$VERDICT
judge "$(pct "$(read_plus_written extmem/seq/rmw)" "$FIO_SEQRW")" "%" ">=" 90 "$(why_missing extmem/seq/rmw)"
SEQW_D=$CELL SEQW_DV=$VERDICT SEQW_DK=$(kernel_pct "$(read_plus_written kernel/seq/rmw)" "$FIO_SEQRW")
vs_kernel window read 2.0; WINR_K=$CELL WINR_KV=$VERDICT
vs_kernel window rmw 2.0; WINW_K=$CELL WINW_KV=$VERDICT
vs_kernel random read 1.2; RNDR_K=$CELL$(device_allows random/read) RNDR_KV=$VERDICT
RNDR_IOPS=$(swapins_per_sec extmem/random/read) RNDR_KIOPS=$(swapins_per_sec kernel/random/read)
judge "$(pct "$RNDR_IOPS" "$FIO_RANDREAD")" "%" ">=" 80 "$(why_missing extmem/random/read)"
RNDR_D=$CELL RNDR_DV=$VERDICT RNDR_DK=$(kernel_pct "$RNDR_KIOPS" "$FIO_RANDREAD")
[[ -z $RNDR_IOPS$RNDR_KIOPS ]] || RNDR_DK+=" (swap-ins/s: extmem ${RNDR_IOPS:-—}, kernel swap ${RNDR_KIOPS:-—})"
vs_kernel hotset rmw 1.3; HOTW_K=$CELL$(device_allows hotset/rmw ", read side") HOTW_KV=$VERDICT
judge "$(div "$(ok_pps "extmem/fit/$FIT_OP")" "$(ok_pps "ram/fit/$FIT_OP")" "%.3f")" x ">=" 0.97 "$(why_missing "extmem/fit/$FIT_OP" "ram/fit/$FIT_OP")"
FIT=$CELL FIT_V=$VERDICT
# First touch beyond the limit: the median populate rate over the pattern runs.
pop_median() { local k out=""; for k in "${!STATUS[@]}"; do [[ $k == "$1"/* && $k != */fit/* ]] && out+=" $(ok_pop "$k")"; done; median <<< "$out"; }
FT_E=$(pop_median extmem); FT_K=$(pop_median kernel)
judge "$(div "$FT_E" "$FT_K")" x ">=" 1.0 "$(why_missing extmem/seq/read kernel/seq/read)"
FT=$CELL FT_V=$VERDICT
# Fits: how much longer extmem's populate took than native (time ratio = rate ratio inverted).
judge "$(div "$(ok_pop "ram/fit/$FIT_OP")" "$(ok_pop "extmem/fit/$FIT_OP")")" "x native time" "<=" 1.5 "$(why_missing "extmem/fit/$FIT_OP" "ram/fit/$FIT_OP")"
FTF=$CELL FTF_V=$VERDICT
# Daemon memory: the run managing the most pages; metadata from its SIGUSR1 line.
MEM_KEY=
for k in "${!MANAGED[@]}"; do
  [[ ${STATUS[$k]} == ok && -n ${MANAGED[$k]} && -n ${META[$k]} ]] || continue
  [[ -z $MEM_KEY ]] || ((MANAGED[$k] > MANAGED[$MEM_KEY])) && MEM_KEY=$k
done
MEM_CELL="—" MEM_V="—" RSS_CELL="—" RSS_V="—"
# The constant of "RSS <= 1% of managed memory + a constant": the idle daemon plus 32 MiB
# for what paging allocates once and keeps (the 16 MiB arena of swap I/O buffers; per
# paging thread two io_urings and a stack; malloc arenas).
RSS_CONST_KIB=$(( ${DAEMON_IDLE_RSS:-0} + 32768 ))
if [[ -n $MEM_KEY ]]; then
  judge "$(div "${META[$MEM_KEY]}" "$((MANAGED[$MEM_KEY] / 4096))" "%.1f")" " B/page" "<=" 16 ""
  MEM_CELL=$CELL MEM_V=$VERDICT
  MEM_CELL="$MEM_CELL; ${MEM_KEY#extmem/}, $((MANAGED[$MEM_KEY] >> 20)) MiB managed"
  RSS_MAX=0
  for k in "${!RSS[@]}"; do [[ ${STATUS[$k]} == ok && -n ${RSS[$k]} ]] && ((RSS[$k] > RSS_MAX)) && RSS_MAX=${RSS[$k]}; done
  RSS_BOUND=$(awk -v m="${MANAGED[$MEM_KEY]}" -v c="$RSS_CONST_KIB" 'BEGIN { printf "%d", m / 1024 * 0.01 + c }')
  RSS_CELL="RSS $((RSS_MAX >> 10)) MiB (target ≤ 1% of $((MANAGED[$MEM_KEY] >> 20)) MiB + idle $((${DAEMON_IDLE_RSS:-0} >> 10)) MiB + 32 MiB = $((RSS_BOUND >> 10)) MiB)"
  RSS_V=$( ((RSS_MAX <= RSS_BOUND)) && echo pass || echo miss)
fi

TARGETS=$(
  echo "| pattern | extmem vs kernel swap | | extmem vs the device | |"
  echo "|---|---|---|---|---|"
  row "sequential read" "$SEQR_K" "$SEQR_KV" "swap reads at $SEQR_D of fio 1 MiB sequential read$SEQR_DK" "$SEQR_DV"
  row "sequential read-modify-write" "$SEQW_K" "$SEQW_KV" "swap reads+writes at $SEQW_D of fio 1 MiB sequential read+write$SEQW_DK" "$SEQW_DV"
  row "random 2 MiB windows, read" "$WINR_K" "$WINR_KV" "" ""
  row "random 2 MiB windows, read-modify-write" "$WINW_K" "$WINW_KV" "" ""
  row "uniform random 4 KiB read" "$RNDR_K" "$RNDR_KV" "swap-in IOPS at $RNDR_D of fio 4 KiB random read QD$THREADS$RNDR_DK" "$RNDR_DV"
  row "hot set 90/10, read-modify-write" "$HOTW_K" "$HOTW_KV" "" ""
  row "working set within the limit ($FIT_SIZE, $FIT_PATTERN $FIT_OP)" "vs no shim: $FIT" "$FIT_V" "" ""
  row "first touch of fresh memory" "populate rate, $SIZE under $LIMIT: $FT" "$FT_V" "all fits ($FIT_SIZE): $FTF" "$FTF_V"
  row "daemon memory" "metadata $MEM_CELL" "$MEM_V" "$RSS_CELL" "$RSS_V"
  if want kernel; then
    echo
    echo "kernel swap's swap I/O: the machine's pswpin/pswpout during the measurement (machine-wide; the bench swapfile is the only swap area on during the harness)."
  fi
)

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
  echo "| $FIT_PATTERN, $FIT_SIZE (within the limit) | $FIT_OP | $(cell "extmem/fit/$FIT_OP") | | | $(cell "ram/fit/$FIT_OP") |"
)
if [[ -n $FIO_RANDREAD$FIO_SEQREAD ]]; then
  DEVICE_LINE="fio on the same filesystem (O_DIRECT, io_uring, ${FIO_RT:-?} s each), the better of a run before and one after the systems' runs: 4 KiB random read QD$THREADS **${FIO_RANDREAD:-n/a} IOPS**, 4 KiB random write QD$THREADS ${FIO_RANDWRITE:-n/a} IOPS, 1 MiB sequential read QD8 **${FIO_SEQREAD:-n/a} MiB/s**, 1 MiB sequential read+write (50/50) QD8 **${FIO_SEQRW:-n/a} MiB/s** (random read / write IOPS, sequential read / read+write MiB/s: before ${FIO_STARTS:-not run}; after ${FIO_ENDS:-not run})."
else
  DEVICE_LINE="not measured in this run."
fi
DETAILS=$(
  echo "| config | pattern | op | size | attempt | status | pages/s | populate pages/s | verify | run s | major faults | evictions | fault p50 ≤ µs | fault p99 ≤ µs | errors | swap read MiB/s | swap written MiB/s | managed bytes | metadata bytes | daemon RSS KiB |"
  echo "|---|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
  tail -n +2 "$RUNS_CSV" | awk -F, '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }'
)
{ echo "$TARGETS"; echo; echo "$TABLE"; echo; echo "$PR_TABLE"; } > "$RESULTS/table.md"
echo
echo "$TARGETS"
echo
echo "$TABLE"
[[ -z $NOTES ]] || { echo; echo "$NOTES"; }
echo
echo "Device: $DEVICE_LINE"
echo
echo "$PR_TABLE"
echo
echo "details: $RUNS_CSV; throughput over time: $TS_CSV; logs: $RESULTS"

# ---- plots ------------------------------------------------------------------------
PLOT_FILES=()
if [[ -n $PLOTS ]] && command -v gnuplot >/dev/null; then
  mkdir -p "$PLOTS"
  # Throughput per pattern and system; the device as pages/s it can move for the pattern.
  {
    echo "# pattern ram extmem kernel device"
    for pattern in $PATTERNS; do for op in $OPS; do
      dev="?"
      case $pattern/$op in
        seq/read) [[ -z $FIO_SEQREAD ]] || dev=$((FIO_SEQREAD * 256)) ;;
        seq/rmw) [[ -z $FIO_SEQRW ]] || dev=$((FIO_SEQRW * 128)) ;;  # 4 KiB read + 4 KiB written per page
        random/read) dev=${FIO_RANDREAD:-?} ;;
      esac
      echo "$pattern-$op $(pps_or_missing "ram/$pattern/$op") $(pps_or_missing "extmem/$pattern/$op") $(pps_or_missing "kernel/$pattern/$op") $dev"
    done; done
  } > "$RESULTS/throughput.dat"
  # Trims the empty margins; a single cluster fails with a set range.
  ROWS=$(($(wc -l < "$RESULTS/throughput.dat") - 1)) XRANGE=""
  ((ROWS < 2)) || XRANGE="set xrange [-0.6:$((ROWS - 1)).6]"
  # gnuplot gives up on a series without one value.
  DEVICE_SERIES=""
  if awk 'NR > 1 && $5 != "?" { found = 1 } END { exit !found }' "$RESULTS/throughput.dat"; then
    DEVICE_SERIES="'' using 5 title \"device ceiling\","
  fi
  gnuplot <<EOF 2> "$RESULTS/gnuplot.log" && PLOT_FILES+=("$PLOTS/bench-throughput.png")
set terminal png size 1100,520 font ",10"
set output "$PLOTS/bench-throughput.png"
set title "extmem-mmapbench, working set $SIZE, limit $LIMIT, $THREADS threads ($(date -u +%Y-%m-%d))"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1000:*]
set ylabel "pages touched per second (log)"
set key outside right top
set grid ytics
set xtics rotate by -25 scale 0
$XRANGE
plot "$RESULTS/throughput.dat" using 3:xtic(1) title "extmem", '' using 4 title "kernel swap", \
     $DEVICE_SERIES '' using 2 title "in-RAM"
EOF
  # Throughput over time: extmem converging on the hot set, kernel swap for reference.
  TS_PATTERN=hotset/rmw
  grep -q "^extmem,hotset,rmw," "$TS_CSV" || TS_PATTERN=$(awk -F, '$1 == "extmem" { print $2 "/" $3; exit }' "$TS_CSV")
  if [[ -n $TS_PATTERN ]]; then
    for c in extmem kernel; do
      awk -F, -v c="$c" -v p="${TS_PATTERN%/*}" -v o="${TS_PATTERN#*/}" \
        '$1 == c && $2 == p && $3 == o { print $4 / 1000, $5 }' "$TS_CSV" > "$RESULTS/ts-$c.dat"
    done
    gnuplot <<EOF 2>> "$RESULTS/gnuplot.log" && PLOT_FILES+=("$PLOTS/bench-over-time.png")
set terminal png size 900,450 font ",10"
set output "$PLOTS/bench-over-time.png"
set title "${TS_PATTERN%/*} ${TS_PATTERN#*/} over time, working set $SIZE, limit $LIMIT"
set xlabel "seconds since the measurement started"
set ylabel "pages touched per second"
set yrange [0:*]
set grid
set key top left
plot "$RESULTS/ts-extmem.dat" using 1:2 with linespoints title "extmem ($POLICY)", \
     "$RESULTS/ts-kernel.dat" using 1:2 with linespoints title "kernel swap"
EOF
  fi
  # PageRank: median seconds per iteration of each configuration that passed.
  if [[ -s $RESULTS/pagerank.md ]]; then
    awk -F'|' '$2 ~ /[a-z]/ && $3 ~ /^ *[0-9.]+ *$/ { gsub(/ /, "", $2); print $2, $3 + 0 }' \
      "$RESULTS/pagerank.md" > "$RESULTS/pagerank.dat"
    PR_TITLE=$(sed -n 's/^PageRank .*: footprint \(.*\)$/footprint \1/p' "$RESULTS/pagerank.md")
    if [[ -s $RESULTS/pagerank.dat ]]; then
      gnuplot <<EOF 2>> "$RESULTS/gnuplot.log" && PLOT_FILES+=("$PLOTS/bench-pagerank.png")
set terminal png size 700,400 font ",10"
set output "$PLOTS/bench-pagerank.png"
set title "PageRank, $THREADS threads, $PR_TITLE"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set ylabel "median seconds per iteration (lower is better)"
set yrange [0:*]
set grid ytics
set key off
plot "$RESULTS/pagerank.dat" using 2:xtic(1)
EOF
    fi
  fi
  ((${#PLOT_FILES[@]})) && log "plots: ${PLOT_FILES[*]}"
fi

# ---- docs/PERFORMANCE.md ---------------------------------------------------------------
if [[ -n $DOC ]]; then
  CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 2^20 }' /proc/meminfo)
  PLOT_MD=
  for p in "${PLOT_FILES[@]}"; do
    PLOT_MD+="![$(basename "$p" .png)]($(realpath --relative-to="$(dirname "$DOC")" "$p"))
"
  done
  BLOCK=$(printf '%s\n' \
    "<!-- BEGIN RESULTS (written by bench/run.sh; edits here are overwritten) -->" \
    "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')$( ((QUICK)) && echo " (--quick)")" \
    "" \
    "- machine: $(nproc) CPUs ($CPU), $MEM RAM, kernel $(uname -r)" \
    "- load average (1, 5, 15 min) $LOAD_START at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end" \
    "- filesystem for both swap areas: $FS_TYPE on $FS_DEV (mounted at $FS_MNT), directory $WORKDIR" \
    "- extmem: commit $GIT_REV, policy $POLICY, \`extmemd --swap $WORKDIR/extmem.swap --swap-size $(human "$SWAP_B")\`, \`EXTMEM_DRAM=$LIMIT_B\`, kernel swap off" \
    "- kernel swap: swapfile of $(human "$SWAP_B") on the same filesystem, cgroup v1 \`memory.limit_in_bytes=$LIMIT_B\`, swappiness $(cat /proc/sys/vm/swappiness)" \
    "- workload: \`extmem-mmapbench --size $SIZE_B --threads $THREADS --pattern P --op O --seconds $SECS --verify\`: working set $SIZE, limit $LIMIT, populate (every page written once, not zero) then $SECS s measured; within the limit: $FIT_SIZE" \
    "- command: \`bench/run.sh $ARGS_TEXT\`" \
    "" \
    "$TARGETS" \
    "" \
    "$TABLE" \
    "${NOTES:+
$NOTES
}" \
    "Device ceiling: $DEVICE_LINE" \
    "" \
    "$PR_TABLE" \
    "" \
    "$PLOT_MD" \
    "<details><summary>Per-run details (extmem counters at the end of the measurement; kernel major faults over the whole run; swap read/written during the measurement: extmem's client counters, kernel swap's pswpin/pswpout)</summary>" \
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
((PR_FAILED == 0)) || failed=1
if ((failed)); then log "some runs failed: see the table"; exit 3; fi
exit 0
