#!/bin/sh
# Verifies the units in DIR (the build-tree copies, naming the build's binaries) with
# both example drop-ins applied. Fails on any message: systemd-analyze verify exits 0
# on unknown keys and unparsable values, it only warns. Exits 77 (skip) without
# systemd-analyze.
set -eu
dir=${1:?usage: verify-units.sh DIR}
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found"; exit 77; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$dir/extmemd.service" "$dir/extmemd.socket" "$scratch/"
mkdir "$scratch/extmemd.service.d" "$scratch/extmem-example.service.d"
cp "$dir/examples/swap-device.conf" "$scratch/extmemd.service.d/"
cp "$dir/examples/under-extmem.conf" "$scratch/extmem-example.service.d/extmem.conf"
# A stand-in for the service the drop-in is meant for.
printf '[Service]\nExecStart=/bin/true\n' >"$scratch/extmem-example.service"

# verify does not look at environment values; the shim path must exist all the same.
preload=$(sed -n 's/^Environment=LD_PRELOAD=//p' "$dir/examples/under-extmem.conf")
[ -f "$preload" ] || { echo "under-extmem.conf: LD_PRELOAD=$preload does not exist"; exit 1; }

# Drop-ins are found next to the units named on the command line.
status=0
out=$(cd "$scratch" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
  extmemd.service extmemd.socket extmem-example.service 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
  echo "systemd-analyze verify failed (exit $status):"
  echo "$out"
  exit 1
fi
echo "units verified: extmemd.service extmemd.socket, with swap-device.conf and under-extmem.conf"
