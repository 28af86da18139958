# bench/lib.sh — setup and teardown shared by bench/run.sh, apps.sh and pagerank.sh
# (sourced, not run): extmemd, kernel swap on a swapfile, a cgroup v1 memory cgroup.
#
# install_cleanup sets an EXIT trap (INT, TERM and HUP exit through it) that leaves the
# machine as it was found, also on failure: the sourcing script's own processes stopped
# (its optional function cleanup_workload), extmemd stopped, the bench swapfile swapped off
# and deleted, the cgroup removed (and the cgroup v1 hierarchy unmounted if it was mounted
# here), swap areas switched off by suspend_other_swaps switched on again; then the
# script's optional cleanup_finish STATUS (its files, a last message) runs.
# Messages are prefixed with the script's name.
# shellcheck shell=bash disable=SC2317  # functions run by the traps

BENCH_NAME=${0##*/}
DAEMON_PID=''      # extmemd started by start_extmemd
KSWAP_FILE=''      # the swapfile of kswap_on
CG='' CG_ROOT=''   # the memory cgroup of memcg_create and its hierarchy's root
IN_MEMCG=()        # a command prefix that runs the command in CG (an exec, so the pid stays)
CG_MOUNTED=''      # the hierarchy memcg_create mounted, when none was
PRIOR_SWAPS=()     # swap areas suspend_other_swaps switched off

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
require_root() { (($(id -u) == 0)) || die "run as root (swapon, cgroups and the daemon need it)"; }
want() { [[ " $CONFIGS " == *" $1 "* ]]; }  # config: whether --configs names it
kernel_swap_on() { grep -qv '^Filename' /proc/swaps; }

to_bytes() {  # 512M -> 536870912
  local n mult=1
  [[ $1 =~ ^([0-9]+)([KkMmGgTt]?)(i?B?)$ ]] || die "bad size '$1'"
  n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    [Kk]) mult=$((1 << 10)) ;; [Mm]) mult=$((1 << 20)) ;;
    [Gg]) mult=$((1 << 30)) ;; [Tt]) mult=$((1 << 40)) ;;
  esac
  echo $((n * mult))
}

stop_pid() {  # pid [name]: SIGTERM, then SIGKILL after 30 s
  local pid=$1 name=${2:-process} grace=30
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name $pid did not stop within $grace s after SIGTERM: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# Starts EXTMEMD (the script sets it) in the background, its output appended to LOG, and
# waits up to 10 s for its socket; sets DAEMON_PID.
start_extmemd() {  # socket log [extmemd options...]
  local socket=$1 daemon_log=$2
  shift 2
  "$EXTMEMD" --socket "$socket" "$@" >> "$daemon_log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 100); do [[ -S $socket ]] && return 0; sleep 0.1; done
  die "extmemd did not start; see $daemon_log"
}
stop_extmemd() { stop_pid "$DAEMON_PID" extmemd; DAEMON_PID=; }

# A swapfile of BYTES at FILE, swapped on (fallocate, else written out with dd).
kswap_on() {  # file bytes
  KSWAP_FILE=$1
  fallocate -l "$2" "$KSWAP_FILE" 2>/dev/null ||
    dd if=/dev/zero of="$KSWAP_FILE" bs=1M count=$(($2 >> 20)) status=none
  chmod 600 "$KSWAP_FILE"
  mkswap "$KSWAP_FILE" > /dev/null
  swapon "$KSWAP_FILE"
}
# Swaps kswap_on's file off and deletes it. Right after a memcg OOM kill swapoff can fail
# for a moment: it retries, then says so.
kswap_off() {
  [[ -n $KSWAP_FILE ]] || return 0
  if grep -qF "$KSWAP_FILE" /proc/swaps; then
    for _ in 1 2 3 4 5; do swapoff "$KSWAP_FILE" 2>/dev/null && break; sleep 2; done
    if grep -qF "$KSWAP_FILE" /proc/swaps; then
      log "warning: could not swap off $KSWAP_FILE: run swapoff on it"
      return 0
    fi
  fi
  rm -f "$KSWAP_FILE"
  KSWAP_FILE=
}

# Swaps off the swap areas that are on (someone else's); the exit trap swaps them on again.
suspend_other_swaps() {
  local name
  while read -r name _; do
    [[ $name == Filename ]] || PRIOR_SWAPS+=("$name")
  done < /proc/swaps
  for name in "${PRIOR_SWAPS[@]}"; do
    log "swapping off $name for the run (it is swapped on again at the end)"
    swapoff "$name"
  done
}

# A cgroup v1 memory cgroup NAME-$$ limited to BYTES, in CG; mounts the memory hierarchy
# when none is mounted.
memcg_create() {  # name bytes
  CG_ROOT=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
  if [[ -z $CG_ROOT ]]; then
    CG_MOUNTED=$(mktemp -d "/tmp/$1-memcg.XXXXXX")
    mount -t cgroup -o memory none "$CG_MOUNTED" ||
      { rmdir "$CG_MOUNTED"; CG_MOUNTED=; die "no cgroup v1 memory controller (mount failed)"; }
    CG_ROOT=$CG_MOUNTED
  fi
  CG=$CG_ROOT/$1-$$
  mkdir "$CG"
  echo "$2" > "$CG/memory.limit_in_bytes"
  # shellcheck disable=SC2016
  IN_MEMCG=(sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG")
}
memcg_stat() { awk -v k="$1" '$1 == k { print $2 }' "$CG/memory.stat"; }  # counter
# A machine-wide counter of /proc/vmstat (pswpin, pswpout: pages).
vmstat_count() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
# Removes CG (whatever is left in it, nothing normally, goes back to the root group) and
# unmounts the hierarchy if memcg_create mounted it.
memcg_remove() {
  if [[ -n $CG && -d $CG ]]; then
    while read -r p; do echo "$p" > "$CG_ROOT/cgroup.procs"; done < "$CG/cgroup.procs" 2>/dev/null
    for _ in 1 2 3 4 5; do rmdir "$CG" 2>/dev/null && break; sleep 0.5; done
    [[ -d $CG ]] && log "warning: could not remove cgroup $CG"
  fi
  CG=''
  # shellcheck disable=SC2034  # the scripts use it
  IN_MEMCG=()
  if [[ -n $CG_MOUNTED ]]; then
    if umount "$CG_MOUNTED"; then rmdir "$CG_MOUNTED"; else log "warning: could not unmount $CG_MOUNTED"; fi
    CG_MOUNTED=
  fi
}

bench_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if declare -F cleanup_workload > /dev/null; then cleanup_workload; fi
  stop_extmemd
  kswap_off
  memcg_remove
  for s in "${PRIOR_SWAPS[@]}"; do
    swapon "$s" 2>/dev/null || log "warning: could not swap $s back on"
  done
  if declare -F cleanup_finish > /dev/null; then cleanup_finish "$rc"; fi
  exit "$rc"
}
install_cleanup() {
  trap bench_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}
