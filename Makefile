# reid: `make demo` sets up everything and runs the pipeline on the shared videos;
# `make test` runs the test suite. Both install missing system packages first (Debian/Ubuntu).

SHELL := /bin/bash
GO ?= go
SHARED ?= $(abspath ../shared)
DATA ?= ./data
BIN := bin/reid
# System packages the build, tests and reference benchmarks need. Installed only when missing.
DEB_PACKAGES := build-essential pkg-config libopencv-dev libjpeg-dev libtorch-dev libjemalloc2 \
	python3 python3-numpy python3-opencv python3-torch python3-torchvision python3-sklearn python3-faiss \
	chromium python3-confluent-kafka rsync
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
# glibc malloc makes libtorch 4-9x slower on these machines (page faults on every large
# allocation); jemalloc reuses memory instead. See README "Why jemalloc".
# OpenMP workers that spin while waiting slow libtorch down up to 100x when the cores are shared.
# jemalloc keeps freed pages instead of handing them back to the kernel (see README "Why jemalloc").
MALLOC_CONF := dirty_decay_ms:-1,muzzy_decay_ms:-1
RUN_ENV := LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=$(MALLOC_CONF) OMP_WAIT_POLICY=PASSIVE REID_SHARED=$(SHARED)

.PHONY: all deps build test bench demo shim clean vet fmt

all: build

deps:
	@./scripts/install-deps.sh $(DEB_PACKAGES)

build: deps build/lib/libreidtorch.so
	$(GO) build -o $(BIN) ./cmd/reid

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

test: build
	$(RUN_ENV) $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(RUN_ENV) $(GO) test -count=1 -timeout 40m ./...
	# What shares memory between goroutines by design (copy-on-write snapshots, reused graph slots,
	# the lookup's gallery swaps, retention, the trainer's parallel decoding into its crop cache,
	# the consumer's fetcher running a batch ahead and the embedder's decoding ahead, the
	# archiver's parallel writes and the S3 store's parallel reads, backups beside writes, ingest's cameras changing
	# while they run, a running pipeline switching models),
	# again under the race detector.
	$(RUN_ENV) $(GO) test -count=1 -race -timeout 20m -run 'TestWritesDuringSnapshot|TestCrash|TestHNSWChurn|TestHNSWParallelInsert|TestBackup|TestSuite/(exact|hnsw)$$' ./index/embedded/
	$(RUN_ENV) $(GO) test -count=1 -race -timeout 20m ./lookup/ ./internal/lease/ ./retention/ ./trainer/ ./stream/ ./embedder/ ./archiver/ ./cropstore/ ./backup/
	$(RUN_ENV) $(GO) test -count=1 -race -timeout 20m -run 'TestReconfigure|TestCancel|TestLiveSourceReconnects|TestLiveStreamSkipsToNewestFrame|TestStalledLiveStreamStopsAtOnce|TestSilentCameraStopsAtOnce|TestHungHTTPCameraReopened|TestHungRTSPCameraReopened' ./ingest/
	$(RUN_ENV) $(GO) test -count=1 -race -timeout 20m -run 'TestModelSwitchWaitsForArchiver|TestRunFollowsPromotedModel' ./cmd/reid/

bench: build
	$(RUN_ENV) ./scripts/bench.sh

demo: build
	$(RUN_ENV) ./scripts/demo.sh

# The libtorch shim (torch/csrc) as a shared library the Go package links by name. Default: Debian's
# libtorch-dev. `make shim LIBTORCH=DIR` rebuilds it against a libtorch tree (CUDA or not);
# LIBTORCH=python uses the installed PyTorch's own libraries (the GPU machine). See docs/GPU.md.
LIBTORCH ?=
TORCH_CXX11_ABI ?= 1
SHIM := build/lib/libreidtorch.so
SHIM_SRC := $(wildcard torch/csrc/*.cpp torch/csrc/*.h)
ifeq ($(LIBTORCH),python)
override LIBTORCH := $(shell python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
endif
ifeq ($(LIBTORCH),)
SHIM_FLAGS := -I/usr/include/torch/csrc/api/include -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10
else
SHIM_FLAGS := -I$(LIBTORCH)/include -I$(LIBTORCH)/include/torch/csrc/api/include -L$(LIBTORCH)/lib \
	-Wl,-rpath,$(LIBTORCH)/lib -Wl,--no-as-needed -ltorch \
	$(if $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),-ltorch_cuda) -ltorch_cpu -lc10 \
	$(if $(wildcard $(LIBTORCH)/lib/libc10_cuda.so),-lc10_cuda)
endif

$(SHIM): $(SHIM_SRC)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 -O2 -fPIC -shared -D_GLIBCXX_USE_CXX11_ABI=$(TORCH_CXX11_ABI) -Wall \
		-o $@ torch/csrc/reidtorch.cpp $(SHIM_FLAGS)

shim:
	rm -f $(SHIM)
	$(MAKE) $(SHIM) LIBTORCH=$(LIBTORCH)

clean:
	rm -rf bin build
