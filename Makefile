# tungate: build, test, lint, run, demo. Targets need only Go and, for the
# ones that touch the network, root (they use sudo when not run as root).

# The Go the README names: the one on PATH, else /usr/local/go (a fresh
# login shell on these machines does not have it on PATH).
GO           ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
# Tools the recipes start (go vet's helpers, the e2e tests' go build) find
# the same Go.
ifneq ($(filter /%,$(GO)),)
export PATH  := $(patsubst %/,%,$(dir $(GO))):$(PATH)
endif
BIN          := bin/tungate
CONFIG       ?= configs/gateway.toml
RUN_CONFIG   ?= configs/rootless.toml
SHARED       ?= ../shared
TOOLS        := $(CURDIR)/bin/tools
# staticcheck 2026.2 is the first release that understands Go 1.26.
STATICCHECK_VERSION := v0.8.2
STATICCHECK  := $(TOOLS)/staticcheck
# The race-instrumented suite plus the end-to-end tests take a few minutes
# on 2 cores; the timeout only catches a hang.
TEST_TIMEOUT ?= 12m
BENCH        ?= .
PKG          ?= ./...
VERSUS_CONFIG  ?= configs/masquerade.toml
VERSUS_SECONDS ?= 5
# make soak: minutes of mixed traffic (RELIABILITY.md, "Soak").
SOAK_MINUTES  ?= 30
# make fuzz: every fuzz target (found by grep, so new ones join by
# themselves), one after another, FUZZTIME each; FUZZ_PARALLEL workers (empty:
# one per core).
FUZZTIME      ?= 30s
FUZZ_PARALLEL ?=
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build run-root man test test-deps bench lint demo conformance differential versus run clean help fuzz soak flood bench-newflows bench-ctlist bench-metrics

all: build

help:
	@echo "make build        bin/tungate"
	@echo "make man          man pages for every command into bin/man (from the CLI's help)"
	@echo "make run          build, then run a shell (or a demo) behind tungate on $(RUN_CONFIG), no root"
	@echo "make run-root     build, then run the kernel-TUN gateway on $(CONFIG) (root)"
	@echo "make test         test tools (as root), go test -race ./..., conformance sample (as root)"
	@echo "make bench        go test -bench '$(BENCH)' $(PKG)"
	@echo "make lint         gofmt, go vet, staticcheck"
	@echo "make fuzz         every Fuzz target for FUZZTIME ($(FUZZTIME)) each, one after another"
	@echo "make demo         curl, ping and ct list through the gateway between two namespaces (root)"
	@echo "make conformance  ../shared/conformance/run.sh against bin/tungate (root)"
	@echo "make differential our 170+ case suite, Linux netfilter first, then bin/tungate (root)"
	@echo "make versus       iperf3 through the gateway vs the bare TUN copy loop (root)"
	@echo "make soak         mixed traffic for SOAK_MINUTES ($(SOAK_MINUTES)); RSS, goroutines, fds flat (root)"
	@echo "make flood        SYN flood ratio against the copy loop (paired phases), malformed storm, edge floods (root)"
	@echo "make bench-newflows  one-packet UDP flows: tungate vs copy loop vs netfilter (root)"
	@echo "make bench-ctlist forwarding during ct list of a full table (root)"
	@echo "make bench-metrics   forwarding with metrics on vs off (root for the whole-gateway part)"

build:
	$(GO) build -o $(BIN) ./cmd/tungate

# One page per command, generated from the cobra command tree (cobra/doc).
man: build
	./$(BIN) man bin/man

# The rootless way, no root needed: command mode around a shell (a short
# demo when stdin is not a terminal) whose only network is tungate.
run: build
	@scripts/run.sh ./$(BIN) $(RUN_CONFIG)

# The kernel-TUN gateway between TUNs root creates (configs/gateway.toml).
run-root: build
	$(SUDO) ./$(BIN) run -c $(CONFIG)

test-deps:
	@scripts/test-deps.sh

# As root the conformance sample follows the Go tests; its last line is the
# sample's "N passed, N failed".
test: test-deps
	@[ "$$(id -u)" = 0 ] || echo "not root: the end-to-end tests skip and the conformance sample does not run"
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory conformance; fi

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=1 $(PKG)

lint: $(STATICCHECK)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Each target's seed corpus already runs in `make test` (go test runs seeds
# as unit tests); this runs the fuzzer itself. There is no CI variant: 5 s
# per target took 252 s for the 14 targets on the shared 2-core machine, the
# instrumented build and the replay of the cached corpus costing more than
# the fuzzing (RELIABILITY.md).
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME) '$(FUZZ_PARALLEL)'

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

demo: build
	$(SUDO) scripts/demo.sh ./$(BIN)

# H and WORKDIR carry this make's pid, so namespaces and files never clash
# with another run; the work directory (gateway log) stays when a case fails.
conformance: build
	@[ -f $(SHARED)/conformance/run.sh ] || { echo "$(SHARED)/conformance/run.sh not found (SHARED=path/to/shared)"; exit 1; }
	@w=/tmp/tungate-conformance-$$$$; \
	$(SUDO) env H=mk$$$$ WORKDIR=$$w bash $(SHARED)/conformance/run.sh gateway $(CURDIR)/$(BIN); rc=$$?; \
	if [ $$rc = 0 ]; then rm -rf $$w; else echo "conformance work directory (gateway log): $$w"; fi; exit $$rc

# The differential suite: every case against the kernel reference, then
# against the gateway (conformance/README.md). About three minutes.
differential: build test-deps
	$(SUDO) bash conformance/run.sh kernel
	$(SUDO) bash conformance/run.sh gateway $(CURDIR)/$(BIN)

# The gateway side runs configs/masquerade.toml (the conformance setup);
# VERSUS_SECONDS per measurement.
versus: build test-deps
	$(SUDO) bash $(SHARED)/bench/versus.sh $(CURDIR)/$(BIN) $(VERSUS_CONFIG) $(VERSUS_SECONDS)

# Issue 14/11 figures; each script says what it measures in its header and
# builds what it runs. Run them on an idle machine; ROUNDS alternates order.
soak: test-deps
	$(SUDO) env PATH="$(PATH)" bash scripts/soak.sh $(SOAK_MINUTES)

flood: test-deps
	$(SUDO) env PATH="$(PATH)" bash scripts/flood-syn-paired.sh 10 3
	$(SUDO) env PATH="$(PATH)" bash scripts/flood-malformed.sh 5
	$(SUDO) env PATH="$(PATH)" sh scripts/flood-edge.sh 8

bench-newflows: test-deps
	$(SUDO) env PATH="$(PATH)" bash scripts/bench-newflows.sh 5 3

bench-ctlist: test-deps
	$(SUDO) env PATH="$(PATH)" bash scripts/bench-ctlist.sh 8 3

bench-metrics:
	$(SUDO) env PATH="$(PATH)" bash scripts/bench-metrics.sh 6 3s

clean:
	rm -rf bin
