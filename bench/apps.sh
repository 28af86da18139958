#!/usr/bin/env bash
# bench/apps.sh — redis-server and memcached under extmem vs kernel swap (run as root).
#
# For each server, three configurations with the same DRAM limit and data:
#   extmem  extmemd (started here) + libextmem.so, EXTMEM_DRAM=<limit>; kernel swap off
#   kernel  a swapfile on the same filesystem + a cgroup v1 memory.limit_in_bytes=<limit>
#   ram     no limit, no shim (the ceiling)
# Each run starts the server on a Unix socket in the work directory, loads every key
# (extmem-kvload load), runs --seconds of closed-loop requests from --conns connections
# over random keys (--get-percent GETs, checked byte for byte, the rest SETs), reads every
# value back (verify), and stops the server. Prints a Markdown table.
#
# usage: bench/apps.sh [--limit SIZE] [--data MIB] [--seconds S] [--conns N]
#                      [--get-percent P] [--servers "redis memcached"]
#                      [--configs "extmem kernel ram"] [--build-dir DIR]
#   defaults: --limit 64M --data 256 --seconds 15 --conns 4 --get-percent 90
# The machine is left as found, also on failure: servers and daemon stopped, the
# swapfile swapped off and deleted, the cgroup removed, the work directory deleted.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build
LIMIT=64M
DATA_MIB=256
SECS=15
CONNS=4
GETS=90
SERVERS="redis memcached"
CONFIGS="extmem kernel ram"
while (($#)); do
  case $1 in
    --limit) LIMIT=$2; shift ;;
    --data) DATA_MIB=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --get-percent) GETS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    -h|--help) sed -n '3,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "apps.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "apps.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
(($(id -u) == 0)) || die "run as root (swapon, cgroups and the daemon need it)"
[[ $LIMIT =~ ^([0-9]+)M$ ]] || die "--limit takes NNNM"
LIMIT_B=$((BASH_REMATCH[1] << 20))
grep -qv '^Filename' /proc/swaps && die "kernel swap is on; switch it off first (extmem runs need it off)"
for b in daemon/extmemd shim/libextmem.so tests/extmem-kvload ctl/extmemctl; do
  [[ -e $BUILD/$b ]] || die "$BUILD/$b is missing: build first (ninja -C build)"
done

WORK=$(mktemp -d /var/tmp/extmem-apps.XXXXXX)
DAEMON_PID='' SERVER_PID='' KSWAP_ON=0 CG=''
CG_ROOT=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)

stop_pid() {  # SIGTERM, then SIGKILL after 20 s
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pid "$SERVER_PID"
  stop_pid "$DAEMON_PID"
  ((KSWAP_ON)) && swapoff "$WORK/kernel.swap"
  [[ -n $CG && -d $CG ]] && rmdir "$CG"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Redis values of 16 KiB - 6 bytes fill four pages exactly (6-byte string header);
# memcached keeps items in 1 MiB slabs, any value size works.
declare -A VALUE_BYTES=([redis]=$((16 * 1024 - 6)) [memcached]=4000)
declare -A MIN_ALLOC=([redis]=4096 [memcached]=128K)

server_cmd() {  # server -> its command line, listening on $WORK/$server.sock
  case $1 in
    redis)
      printf 'port 0\nunixsocket %s\nsave ""\nappendonly no\ndir %s\nlogfile ""\n' \
        "$WORK/redis.sock" "$WORK" > "$WORK/redis.conf"
      echo "redis-server $WORK/redis.conf" ;;
    memcached) echo "memcached -u root -s $WORK/memcached.sock -m 2048 -t 2" ;;
  esac
}

start_server() {  # server config
  local server=$1 config=$2 cmd
  cmd=$(server_cmd "$server")
  rm -f "$WORK/$server.sock"
  case $config in
    extmem)
      # shellcheck disable=SC2086
      env LD_PRELOAD="$BUILD/shim/libextmem.so" EXTMEM_SOCKET="$WORK/extmemd.sock" \
        EXTMEM_DRAM="$LIMIT_B" EXTMEM_MIN_ALLOC="${MIN_ALLOC[$server]}" EXTMEM_REQUIRED=1 \
        $cmd > "$WORK/$server-$config.log" 2>&1 & ;;
    kernel)
      # shellcheck disable=SC2086,SC2016
      sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" $cmd \
        > "$WORK/$server-$config.log" 2>&1 & ;;
    ram)
      # shellcheck disable=SC2086
      $cmd > "$WORK/$server-$config.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 200); do [[ -S $WORK/$server.sock ]] && return 0; sleep 0.1; done
  cat "$WORK/$server-$config.log" >&2
  die "$server did not start ($config)"
}

declare -A RESULT
run_one() {  # server config
  local server=$1 config=$2 keys kv t0 load_s out extra=""
  keys=$(((DATA_MIB << 20) / VALUE_BYTES[$server]))
  kv=("$BUILD/tests/extmem-kvload" --proto "$server" --socket "$WORK/$server.sock"
      --keys "$keys" --value-bytes "${VALUE_BYTES[$server]}")
  start_server "$server" "$config"
  local maj0=0
  [[ $config == kernel ]] && maj0=$(awk '$1 == "pgmajfault" { print $2 }' "$CG/memory.stat")
  t0=$(date +%s.%N)
  "${kv[@]}" load > /dev/null || die "$server $config: load failed"
  load_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  out=$("${kv[@]}" --conns "$CONNS" --seconds "$SECS" --get-percent "$GETS" bench) ||
    die "$server $config: bench failed: $out"
  "${kv[@]}" verify > /dev/null || die "$server $config: verify failed"
  case $config in
    extmem)
      extra=$("$BUILD/ctl/extmemctl" --control "$WORK/control.sock" show "$SERVER_PID" |
        awk '$1 == "resident" { r = $2 " " $3 } $1 == "swapped" { s = $2 " " $3 }
             $1 == "major_faults" { m = $2 } END { printf "resident %s, swapped %s, %s major faults", r, s, m }') ;;
    kernel)
      extra="max usage $(($(cat "$CG/memory.max_usage_in_bytes") >> 20)) MiB, $(($(awk '$1 == "pgmajfault" { print $2 }' "$CG/memory.stat") - maj0)) major faults" ;;
  esac
  stop_pid "$SERVER_PID"; SERVER_PID=
  RESULT[$server/$config]="$(awk '{ print $6 }' <<< "$out")|$load_s|$extra"
  log "$server $config: $out; load ${load_s} s; $extra"
}

for config in $CONFIGS; do
  case $config in
    extmem)
      "$BUILD/daemon/extmemd" --socket "$WORK/extmemd.sock" --control "$WORK/control.sock" \
        --config /dev/null --swap "$WORK/extmem.swap" --swap-size 2G --stats-interval 0 \
        > "$WORK/extmemd.log" 2>&1 &
      DAEMON_PID=$!
      for _ in $(seq 1 100); do [[ -S $WORK/extmemd.sock ]] && break; sleep 0.1; done
      for server in $SERVERS; do run_one "$server" extmem; done
      stop_pid "$DAEMON_PID"; DAEMON_PID=
      rm -f "$WORK/extmem.swap" ;;
    kernel)
      [[ -n $CG_ROOT ]] || die "no cgroup v1 memory controller mounted"
      CG=$CG_ROOT/extmem-apps-$$
      mkdir "$CG"
      echo "$LIMIT_B" > "$CG/memory.limit_in_bytes"
      fallocate -l 2G "$WORK/kernel.swap"
      chmod 600 "$WORK/kernel.swap"
      mkswap "$WORK/kernel.swap" > /dev/null
      swapon "$WORK/kernel.swap"; KSWAP_ON=1
      for server in $SERVERS; do run_one "$server" kernel; done
      swapoff "$WORK/kernel.swap"; KSWAP_ON=0
      rmdir "$CG"; CG=
      rm -f "$WORK/kernel.swap" ;;
    ram)
      for server in $SERVERS; do run_one "$server" ram; done ;;
    *) die "unknown config '$config'" ;;
  esac
done

echo
echo "limit $LIMIT, data $DATA_MIB MiB, $CONNS connections, $GETS% GET, ${SECS} s; $(nproc) CPUs, kernel $(uname -r)"
echo
echo "| server | config | ops/s | load s | paging |"
echo "|---|---|---:|---:|---|"
for server in $SERVERS; do for config in $CONFIGS; do
  IFS='|' read -r ops load extra <<< "${RESULT[$server/$config]:-—|—|}"
  echo "| $server | $config | $ops | $load | $extra |"
done; done
