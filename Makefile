# reid: `make demo` sets up everything and runs the pipeline on the shared videos;
# `make test` runs the test suite. Both install missing system packages first (Debian/Ubuntu).

SHELL := /bin/bash
GO ?= go
SHARED ?= $(abspath ../shared)
DATA ?= ./data
BIN := bin/reid
# System packages the build, tests and reference benchmarks need. Installed only when missing.
DEB_PACKAGES := build-essential pkg-config libopencv-dev libtorch-dev libjemalloc2 \
	python3 python3-numpy python3-opencv python3-torch python3-torchvision python3-sklearn python3-faiss \
	chromium
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
# glibc malloc makes libtorch 4-9x slower on these machines (page faults on every large
# allocation); jemalloc reuses memory instead. See README "Why jemalloc".
RUN_ENV := LD_PRELOAD=$(JEMALLOC) REID_SHARED=$(SHARED)

.PHONY: all deps build test bench demo shim clean vet fmt

all: build

deps:
	@./scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	$(GO) build -o $(BIN) ./cmd/reid

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

test: build
	$(RUN_ENV) $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(RUN_ENV) $(GO) test -count=1 -timeout 40m ./...

bench: build
	$(RUN_ENV) ./scripts/bench.sh

demo: build
	$(RUN_ENV) ./scripts/demo.sh

clean:
	rm -rf bin build
