#!/usr/bin/env bash
# Set up (Debian packages, build) and run every test: unit tests in the release build,
# the same again under ASan+UBSan, and the CLI tests. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all asan valgrind
bash tests/run.sh
