#!/bin/bash
# The extmem demo: starts extmemd with a swap file on a private socket, runs a workload
# four times larger than its DRAM limit under the shim, prints the daemon's stats as it
# runs, and verifies every byte the workload wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=$PWD/${BUILD_DIR:-build}
limit=${DEMO_LIMIT:-256M}
size_mib=${DEMO_SIZE_MIB:-1024}
seconds=${DEMO_SECONDS:-20}

# The swap file needs a filesystem with O_DIRECT: /var/tmp is disk-backed on Debian.
dir=$(mktemp -d /var/tmp/extmem-demo-XXXXXX)
chmod 755 "$dir"
daemon_pid=
cleanup() {
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

echo "== kernel capabilities (extmemd --probe)"
"$build/daemon/extmemd" --probe | grep -E "^(userfaultfd|uffd.missing_shmem|uffd.minor_shmem|uffd.wp_hugetlbfs_shmem|io_uring|process_madvise.pageout|kernel_swap) |required"

echo
echo "== extmemd: swap file $dir/swap (2 GiB), stats every second"
"$build/daemon/extmemd" --socket "$dir/extmemd.sock" --swap "$dir/swap" --swap-size 2G \
  --stats-interval 1 >"$dir/extmemd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "serving clients" "$dir/extmemd.log" && break; sleep 0.05; done

echo
echo "== a workload of $size_mib MiB under a DRAM limit of $limit: 4 threads, random reads"
echo "   and writes of whole pages for $seconds s, every page checked on every read"
EXTMEM_SOCKET=$dir/extmemd.sock EXTMEM_DRAM=$limit EXTMEM_REQUIRED=1 \
  LD_PRELOAD=$build/shim/libextmem.so \
  "$build/tests/extmem-paging" integrity --mib "$size_mib" --threads 4 --seconds "$seconds" &
workload_pid=$!
# The daemon's stats line for the workload, once a second, until the workload exits.
tail -n0 -f --pid="$workload_pid" "$dir/extmemd.log" |
  grep --line-buffered "stats: pid=$workload_pid " |
  sed -u -E 's/^.* resident=([^ ]+ [^ ]+) swapped=([^ ]+ [^ ]+) swap_clusters=[0-9]+ faults\(first_touch=([0-9]+) major=([0-9]+) minor=([0-9]+).* evictions=([0-9]+) clean_evictions=([0-9]+).*fault_latency\(p50<=([0-9]+)us p99<=([0-9]+)us\).*/  resident \1  swapped \2  faults: first-touch \3 major \4 minor \5  evictions \6 (clean \7)  latency p50<=\8us p99<=\9us/'
wait "$workload_pid"

echo
echo "== extmemd's account of the client when it left"
grep -E "client [0-9]+ (exited|disconnected)" "$dir/extmemd.log" | sed 's/^[^ ]* [^ ]* /  /'
