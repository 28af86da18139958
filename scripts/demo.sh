#!/bin/bash
# The extmem demo: starts extmemd with a swap file on private sockets, runs a workload
# four times larger than its DRAM limit with `extmemctl run`, watches it live with
# `extmemctl top`, halves its limit while it runs, and verifies every byte it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=$PWD/${BUILD_DIR:-build}
limit=${DEMO_LIMIT:-256M}
lowered=${DEMO_LOWERED_LIMIT:-128M}
size_mib=${DEMO_SIZE_MIB:-1024}
seconds=${DEMO_SECONDS:-20}

# The swap file needs a filesystem with O_DIRECT: /var/tmp is disk-backed on Debian.
dir=$(mktemp -d /var/tmp/extmem-demo-XXXXXX)
chmod 755 "$dir"
daemon_pid=
top_pid=
cleanup() {
  [[ -n $top_pid ]] && kill -INT "$top_pid" 2>/dev/null
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
extmemctl=("$build/ctl/extmemctl" --control "$dir/control.sock")

echo "== kernel capabilities (extmemd --probe)"
"$build/daemon/extmemd" --probe | grep -E "^(userfaultfd|uffd.missing_shmem|uffd.minor_shmem|uffd.wp_hugetlbfs_shmem|io_uring|process_madvise.pageout|kernel_swap) |required"

echo
echo "== extmemd: swap file $dir/swap (2 GiB), log in $dir/extmemd.log"
"$build/daemon/extmemd" --config /dev/null --socket "$dir/extmemd.sock" \
  --control "$dir/control.sock" --swap "$dir/swap" --swap-size 2G >"$dir/extmemd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "serving clients" "$dir/extmemd.log" && break; sleep 0.05; done
"${extmemctl[@]}" status

echo
echo "== extmemctl run --limit $limit -- extmem-paging integrity: $size_mib MiB, 4 threads,"
echo "   random reads and writes of whole pages for $seconds s, every page checked on every read"
# run execs the workload, so $! is the workload's pid.
"${extmemctl[@]}" run --limit "$limit" --socket "$dir/extmemd.sock" --required -- \
  "$build/tests/extmem-paging" integrity --mib "$size_mib" --threads 4 --seconds "$seconds" &
workload_pid=$!
"${extmemctl[@]}" top --interval 1 &
top_pid=$!
sleep $((seconds / 2))
echo
echo "== extmemctl set-limit $workload_pid $lowered (live)"
"${extmemctl[@]}" set-limit "$workload_pid" "$lowered"
wait "$workload_pid"
kill -INT "$top_pid" && wait "$top_pid" || true
top_pid=

echo
echo "== extmemd's account of the client when it left"
grep -E "client [0-9]+ (exited|disconnected)" "$dir/extmemd.log" | sed 's/^[^ ]* [^ ]* /  /'
