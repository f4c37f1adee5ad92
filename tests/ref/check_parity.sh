#!/usr/bin/env bash
# Check fable's cpu engine against PyTorch on a config that is not in the repository:
# writes a fresh fixture with tests/ref/llama_ref.py into a temporary directory, then runs the
# C parity test (build/rel/tests/model/test_torch_parity) on it.
#
#   tests/ref/check_parity.sh [llama_ref.py options]
#   e.g. tests/ref/check_parity.sh --dim 64 --hidden 172 --layers 5 --heads 8 --kv-heads 4 \
#            --vocab 512 --T 64 --batch 2 --seed 3
#        tests/ref/check_parity.sh --untied --clip 1.0 --ignore-frac 0.2 --seed 9
#
# Options are llama_ref.py's (`/usr/bin/python3 tests/ref/llama_ref.py --help`); --out is set
# here. Environment: FABLE_PYTHON (default /usr/bin/python3, which has torch), FABLE_PARITY_TOL
# (relative tolerance; default here 1e-4, larger models and learning rates accumulate more
# fp32 rounding and Adam amplifies it),
# KEEP=1 keeps the fixture and prints its path. Exit status: the C test's.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${FABLE_PYTHON:-/usr/bin/python3}
# Arbitrary configs (bigger sums, any lr) get the 1e-4 bound; the committed fixtures run at 1e-5.
export FABLE_PARITY_TOL=${FABLE_PARITY_TOL:-1e-4}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fable-parity.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "fixture kept in $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
"$py" tests/ref/llama_ref.py "$@" --out "$tmp/fixture.fx"
make -s build/rel/tests/model/test_torch_parity
build/rel/tests/model/test_torch_parity "$tmp/fixture.fx"
