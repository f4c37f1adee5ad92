#!/usr/bin/env bash
# Install every Debian package fable's build and tests need (idempotent), then build.
set -euo pipefail
# clang-14 + libclang-rt-14-dev + libomp-14-dev: the libFuzzer harnesses (make fuzz); valgrind: the
# memcheck test; tmux: the dashboard's terminal test; libopenmpi-dev + openmpi-bin: mpirun training.
pkgs=(build-essential libopenblas-openmp-dev libcurl4-openssl-dev libncurses-dev python3
      clang-14 libclang-rt-14-dev libomp-14-dev valgrind tmux libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
make -j"$(nproc)" all
