#!/bin/bash
# Installs the Debian packages extmem builds and tests with. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config clang-format
  clang libclang-rt-14-dev  # libFuzzer, for tests/fuzz
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libtomlplusplus-dev
  liburing-dev libspdlog-dev libboost-dev libgtest-dev libgmock-dev
  util-linux procps systemd
  redis-server redis-tools memcached  # tests/integration/applications_test.cpp, bench/apps.sh
  fio gnuplot-nox  # bench/run.sh: the device ceiling and the plots (bench.smoke)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
