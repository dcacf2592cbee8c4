# Skiff developer entry points. `make help` lists the targets.
#
# Every recipe runs in bash with -eu -o pipefail, so a failing command anywhere
# in a pipeline fails the target.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS += --no-print-directory

GO ?= go

# DEB_PACKAGES are the Debian packages the build, the tests and the benchmarks
# need on the machine. `make deps` installs the missing ones. Later milestones
# append here (containerd, runc, iptables, containernetworking-plugins, ...).
#   ca-certificates  TLS roots for the Go module proxy
#   etcd-server      etcd 3.4, the comparison point of `make bench` only
#   procps psmisc    ps/pkill/fuser, used by the process-level tests
#   containerd runc containernetworking-plugins iptables conntrack iproute2
#                    the worker agent's runtime and networking, and the lab
#   docker-registry busybox-static curl  the lab's registry, its test images
#                    and the lab tests' HTTP client inside host namespaces
DEB_PACKAGES := ca-certificates etcd-server procps psmisc containerd runc containernetworking-plugins iptables conntrack iproute2 docker-registry busybox-static curl

# Staticcheck 2026.2.2; builds with and understands Go 1.26.
STATICCHECK_VERSION := v0.8.2
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN_DIR)/staticcheck

# apt-get needs root; use sudo only when not root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# RUN_DIR is the data directory of the single-node cluster of `make run`.
RUN_DIR ?= $(CURDIR)/.run

# The lab of `make lab`: LAB_MASTERS masters and LAB_WORKERS workers, state,
# logs and data in LAB_DIR; LAB_FLAGS are more `lab up` flags (--agents).
LAB_MASTERS ?= 1
LAB_WORKERS ?= 2
LAB_DIR ?= $(CURDIR)/.lab
LAB_FLAGS ?=

TEST_TIMEOUT ?= 25m
FUZZ_PKG := ./raftstore/internal/command/
FUZZ_TARGET := FuzzDecode
# TEST_FUZZTIME is the short fuzz run inside `make test`; FUZZTIME the long one of `make fuzz`.
TEST_FUZZTIME ?= 15s
FUZZTIME ?= 5m

.PHONY: help deps debs tools build run test fuzz bench pgo lint clean lab lab-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/'

deps: ## install missing Debian packages and Go tools (idempotent)
	@$(MAKE) debs
	@$(MAKE) tools

debs: ## install the missing packages of DEB_PACKAGES
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg -s "$$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $$missing </dev/null; \
	fi

tools: ## install staticcheck into $(go env GOPATH)/bin when missing or of another version
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION:v%=%))'; then \
		echo "deps: installing staticcheck $(STATICCHECK_VERSION)"; \
		GOBIN="$(GOBIN_DIR)" $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

build: ## build bin/skiff
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/skiff ./cmd/skiff

run: build ## start a single-node cluster in the foreground (data in RUN_DIR); Ctrl-C stops it
	exec bin/skiff up --data-dir "$(RUN_DIR)"

# The tests' own binaries build without cmd/skiff/default.pgo (-pgo=off): a
# profile changes how the code is optimized, not what it does, and with it the
# race-instrumented test of cmd/skiff would compile every package once more.
# The skiff binaries the end-to-end tests start are built with it, as bin/skiff.
test: ## run every test with -race, then a short fuzz run
	$(GO) test -race -pgo=off -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -run '^$$' -fuzz '^$(FUZZ_TARGET)$$' -fuzztime $(TEST_FUZZTIME) $(FUZZ_PKG)

fuzz: ## fuzz the log entry decoder for FUZZTIME (default 5m)
	$(GO) test -run '^$$' -fuzz '^$(FUZZ_TARGET)$$' -fuzztime $(FUZZTIME) $(FUZZ_PKG)

bench: build ## Kubernetes API and store benchmarks against etcd (e2e/storebench), then in-module micro benchmarks
	cd e2e/storebench && SKIFF_BIN="$(CURDIR)/bin/skiff" $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m .
	$(GO) test -run '^$$' -bench . -timeout 30m ./...

pgo: build ## refresh cmd/skiff/default.pgo, the profile `go build` optimizes skiff with: the three masters' CPU in the 5,000-node scheduling benchmark
	dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
	(cd e2e/storebench && SCHEDBENCH_SIZES=5000x30000 APIBENCH_PROFILE_DIR="$$dir" SKIFF_BIN="$(CURDIR)/bin/skiff" $(GO) test -run '^$$' -bench '^BenchmarkScheduling$$' -benchtime 1x -timeout 30m .); \
	$(GO) tool pprof -proto "$$dir"/sched-5000-m1.pprof "$$dir"/sched-5000-m2.pprof "$$dir"/sched-5000-m3.pprof > cmd/skiff/default.pgo

lint: tools ## gofmt, go vet and staticcheck
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

lab: build ## bring up the multi-host lab (LAB_MASTERS, LAB_WORKERS; needs root) in the background and print how to use it
	$(GO) run ./e2e/cmd/lab up --masters $(LAB_MASTERS) --workers $(LAB_WORKERS) --dir "$(LAB_DIR)" --skiff bin/skiff $(LAB_FLAGS)

lab-down: ## remove everything `make lab` created (also after a crash)
	$(GO) run ./e2e/cmd/lab down --dir "$(LAB_DIR)"

clean: ## remove bin/ and .run/ (the default `make run` data directory)
	rm -rf bin .run
