#!/bin/bash
# The extmem demo: starts extmemd on a private socket, runs a workload under the shim,
# and shows that its memory is managed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=${BUILD_DIR:-build}
dir=$(mktemp -d /tmp/extmem-demo-XXXXXX)
chmod 755 "$dir"
daemon_pid=
cleanup() {
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

echo "== kernel capabilities (extmemd --probe)"
"$build/daemon/extmemd" --probe

echo
echo "== starting extmemd on $dir/extmemd.sock"
"$build/daemon/extmemd" --socket "$dir/extmemd.sock" >"$dir/extmemd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "serving clients" "$dir/extmemd.log" && break; sleep 0.05; done

export EXTMEM_SOCKET=$dir/extmemd.sock EXTMEM_REQUIRED=1
shim=$PWD/$build/shim/libextmem.so
workload=$PWD/$build/tests/extmem-workload

echo
echo "== a workload holding 512 MiB under the shim"
LD_PRELOAD=$shim "$workload" hold --mib 512 --seconds 4 >"$dir/hold.out" &
client=$!
for _ in $(seq 200); do grep -q ready "$dir/hold.out" && break; sleep 0.05; done
echo "its arena, as mapped in /proc/$client/maps:"
grep extmem-arena "/proc/$client/maps" | sed 's/^/  /'
echo "its memory (/proc/$client/smaps_rollup): the managed pages are shared memfd pages"
grep -E '^(Rss|Pss_Anon|Pss_Shmem):' "/proc/$client/smaps_rollup" | sed 's/^/  /'
kill -USR1 "$daemon_pid"
sleep 0.3
echo "extmemd's view (SIGUSR1):"
grep "stats:" "$dir/extmemd.log" | sed 's/^[^ ]* [^ ]* /  /'
wait "$client"

echo
echo "== a 4-thread stress: mmap, malloc, realloc, mremap, munmap, DONTNEED, every byte verified"
LD_PRELOAD=$shim "$workload" stress --mmap-mib 1024 --malloc-mib 256 --threads 4 --require-managed

echo
echo "== extmemd's log"
sed 's/^/  /' "$dir/extmemd.log"
