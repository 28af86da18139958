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
# swapfile swapped off and deleted, the cgroup removed (and the cgroup v1 hierarchy
# unmounted if this script mounted it), the work directory deleted.
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

# shellcheck source=lib.sh
source "$REPO/bench/lib.sh"
require_root
[[ $LIMIT =~ ^([0-9]+)M$ ]] || die "--limit takes NNNM"
LIMIT_B=$((BASH_REMATCH[1] << 20))
kernel_swap_on && die "kernel swap is on; switch it off first (extmem runs need it off)"
for b in daemon/extmemd shim/libextmem.so tests/extmem-kvload ctl/extmemctl; do
  [[ -e $BUILD/$b ]] || die "$BUILD/$b is missing: build first (ninja -C build)"
done
EXTMEMD=$BUILD/daemon/extmemd

WORK=$(mktemp -d /var/tmp/extmem-apps.XXXXXX)
SERVER_PID=''
cleanup_workload() { stop_pid "$SERVER_PID" server; }
cleanup_finish() {  # the work directory, unless it holds a swapfile still on
  if [[ -z $KSWAP_FILE ]]; then rm -rf "$WORK"; else log "kept $WORK: it holds $KSWAP_FILE"; fi
}
install_cleanup

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
      # shellcheck disable=SC2086
      "${IN_MEMCG[@]}" $cmd > "$WORK/$server-$config.log" 2>&1 & ;;
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
  [[ $config == kernel ]] && maj0=$(memcg_stat pgmajfault)
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
      extra="max usage $(($(cat "$CG/memory.max_usage_in_bytes") >> 20)) MiB, $(($(memcg_stat pgmajfault) - maj0)) major faults" ;;
  esac
  stop_pid "$SERVER_PID" "$server"; SERVER_PID=
  RESULT[$server/$config]="$(awk '{ print $6 }' <<< "$out")|$load_s|$extra"
  log "$server $config: $out; load ${load_s} s; $extra"
}

for config in $CONFIGS; do
  case $config in
    extmem)
      start_extmemd "$WORK/extmemd.sock" "$WORK/extmemd.log" --control "$WORK/control.sock" \
        --config /dev/null --swap "$WORK/extmem.swap" --swap-size 2G --stats-interval 0
      for server in $SERVERS; do run_one "$server" extmem; done
      stop_extmemd
      rm -f "$WORK/extmem.swap" ;;
    kernel)
      memcg_create extmem-apps "$LIMIT_B"
      kswap_on "$WORK/kernel.swap" $((2 << 30))
      for server in $SERVERS; do run_one "$server" kernel; done
      kswap_off
      memcg_remove ;;
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
