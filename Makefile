# fable — build. `make` builds ./fable and build/libfable.a; `make test` runs every test
# (release build, then the unit tests again under ASan+UBSan); `make asan` builds the
# sanitizer variant only. Sources are found by wildcard: a new .c under src/ is built
# into the library, a new tests/**/test_*.c becomes a test binary.

CC      ?= gcc
BLAS_INC = /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB = /usr/lib/x86_64-linux-gnu/openblas-openmp
ARCH    ?= -march=native
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -I$(BLAS_INC) -fopenmp \
                -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes -g $(ARCH)
CFLAGS  ?= -O3
# -rdynamic: the cuda engine (a shared object loaded at run time) resolves fb_err & co. from the binary
LDLIBS   = -rdynamic -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lcurl -lm -lpthread -ldl
SANFLAGS = -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/main.c' | sort)
TEST_SRC := $(shell find tests -name 'test_*.c' | sort)

REL_OBJ  := $(LIB_SRC:%.c=build/rel/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=build/asan/%.o)
VG_OBJ   := $(LIB_SRC:%.c=build/vg/%.o)
REL_TESTS  := $(TEST_SRC:tests/%.c=build/rel/tests/%)
ASAN_TESTS := $(TEST_SRC:tests/%.c=build/asan/tests/%)
HEADERS  := $(shell find include src tests -name '*.h')

# ---- the cuda engine: libfable_cuda.so, built whenever nvcc is found ($CUDA_HOME, else
# /usr/local/cuda), for sm_80 and sm_90a. fable loads it at run time (--engine cuda), so the
# binary itself needs no CUDA library and runs where there is none.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
NVFLAGS   = -std=c++17 -O3 -Iinclude -Isrc $(CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall -lineinfo
CU_SRC   := $(sort $(wildcard src/engine/cuda/*.cu))
CU_OBJ   := $(CU_SRC:%.cu=build/cuda/%.o)
CU_HDRS  := $(wildcard src/engine/cuda/*.cuh src/engine/cuda/*.h) include/fable/engine.h include/fable/model.h
ifneq ($(wildcard $(NVCC)),)
CUDA_SO  := build/libfable_cuda.so
endif

.PHONY: all asan valgrind tests test clean cuda
all: fable build/libfable.a $(REL_TESTS) $(CUDA_SO)
cuda: $(CUDA_SO)

build/cuda/%.o: %.cu $(CU_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) $(if $(findstring cuda_infer,$<),--fmad=false) -c -o $@ $<

build/libfable_cuda.so: $(CU_OBJ)
	$(NVCC) -shared $(CUDA_ARCH) -o $@ $^ -L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 -lcublasLt

fable: build/rel/src/cli/main.o build/libfable.a
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/libfable.a: $(REL_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/asan/libfable.a: $(ASAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/rel/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -c -o $@ $<

build/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(SANFLAGS) -c -o $@ $<

build/rel/tests/%: tests/%.c tests/testlib.h build/libfable.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -Itests -o $@ $< build/libfable.a $(LDLIBS)

build/asan/tests/%: tests/%.c tests/testlib.h build/asan/libfable.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(SANFLAGS) -Itests -o $@ $< build/asan/libfable.a $(LDLIBS)

build/asan/fable: build/asan/src/cli/main.o build/asan/libfable.a
	$(CC) $(CFLAGS_COMMON) $(SANFLAGS) -o $@ $^ $(LDLIBS)

asan: build/asan/fable $(ASAN_TESTS)

# build/vg/fable: for valgrind memcheck (tests/cli/valgrind_train.sh). -O1 keeps the code close to
# the source; x86-64-v3 (AVX2) because valgrind cannot run AVX-512 instructions.
VGFLAGS = -O1 -march=x86-64-v3
build/vg/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(VGFLAGS) -c -o $@ $<

build/vg/fable: $(VG_OBJ) build/vg/src/cli/main.o
	$(CC) $(CFLAGS_COMMON) $(VGFLAGS) -o $@ $(VG_OBJ) build/vg/src/cli/main.o $(LDLIBS)
valgrind: build/vg/fable
tests: $(REL_TESTS)

test: all asan
	bash tests/run.sh

clean:
	rm -rf build fable
