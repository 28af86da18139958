#!/bin/bash
# Builds extmem and runs every test (unit and integration) with ctest. Needs root: the
# integration tests start a real extmemd and run clients as root and as nobody.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j2 "$@"
