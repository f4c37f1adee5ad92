#!/usr/bin/env bash
# Pack what scripts/gpu-check.sh needs on a GPU machine that has the NVIDIA driver and CUDA
# but no Debian packages or network: the binaries built here (fable, libfable_cuda.so, the
# engine and model test binaries), the shared libraries fable links (OpenBLAS, libcurl and
# theirs; glibc is the machine's), and the real data the checks read (../shared/data: the
# stories260K model and tokenizers, the TinyStories sample). One compressed file,
# .dev/bundle.tar.xz (ignored by git; carried to the device by the caller).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FABLE_DATA:-../shared/data}
make -j"$(nproc)" all >/dev/null
[ -f build/libfable_cuda.so ] || { echo "gpu-bundle: no build/libfable_cuda.so (is nvcc in \$CUDA_HOME/bin?)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/.dev/lib" "$T/.dev/data" "$T/build/rel/tests"
cp fable "$T/"
cp build/libfable_cuda.so "$T/build/"
cp -r build/rel/tests/engine build/rel/tests/model "$T/build/rel/tests/"
for lib in $(ldd fable | awk '$3 ~ /^\// {print $3}'); do
  case "$(basename "$lib")" in libc.so*|libm.so*|libresolv.so*|ld-linux*|libpthread*|libdl.so*) ;; *) cp -L "$lib" "$T/.dev/lib/" ;; esac
done
cp -r "$DATA/stories260K" "$DATA/tokenizer" "$DATA/tinystories" "$T/.dev/data/"
mkdir -p .dev
tar -C "$T" -cJf .dev/bundle.tar.xz .
ls -la .dev/bundle.tar.xz
