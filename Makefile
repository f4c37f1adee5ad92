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
LDLIBS  += -lncursesw
# ---- MPI (data-parallel `mpirun -np N fable train`): compiled in whenever mpicc is found
# (MPI=0 turns it off). Only src/train/dist.c includes mpi.h; the binary still runs alone,
# without mpirun, and then never calls MPI.
MPICC ?= mpicc
ifneq ($(MPI),0)
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
endif
ifneq ($(strip $(MPI_LIBS)),)
CFLAGS_COMMON += -DFABLE_MPI $(MPI_CFLAGS)
LDLIBS        += $(MPI_LIBS)
$(info fable: MPI on ($(MPICC) found): mpirun -np N ./fable train ... runs data-parallel)
else
$(info fable: MPI off ($(if $(filter 0,$(MPI)),MPI=0,no $(MPICC) found)): install libopenmpi-dev for mpirun training)
endif
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

# ---- fuzzing (docs/testing.md, fuzz/): libFuzzer harnesses for every parser of outside
# bytes, built with clang-14 against the parsers compiled with ASan+UBSan and coverage
# (build/fuzz/). `make fuzz FUZZ_SECONDS=N` fuzzes each target N seconds from the kept
# corpus fuzz/corpus/<target>/ plus seed files that ./fable makes; `make fuzz-build` only builds.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := ckpt llama2c tok_bin spm_model shard corpus_json corpus_text jsonl encode
FUZZ_LIB_SRC := src/data/json.c src/data/shard.c src/data/loader.c src/data/spm_proto.c src/data/tokenizer.c src/data/tokenizer_io.c \
                src/data/tokenize.c src/data/bpe_train.c src/model/model.c src/model/llama2c.c \
                src/train/ckpt.c src/util/util.c
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -Ifuzz -fopenmp -g -O1 $(ARCH) -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ     := $(FUZZ_LIB_SRC:%.c=build/fuzz/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_OBJ) $(FUZZ_BINS)  # objects named here, so make keeps them

build/fuzz/src/%.o: src/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) -lm -lpthread

fuzz: fable fuzz-build
	bash fuzz/run.sh $(FUZZ_SECONDS)
