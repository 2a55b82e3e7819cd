# dlock build and test entry points. Every recipe runs in bash with
# -euo pipefail; `make test` is what CI runs (.ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
REDIS_NODES ?= 5
REDIS_DIR ?= .redis

# make sim [CLASS=...] [SEED=...] [SEEDS=...] [FIRST_SEED=...] [TRACE=...]
SIM_FLAGS = $(if $(CLASS),-class=$(CLASS)) $(if $(SEED),-seed=$(SEED)) \
	$(if $(SEEDS),-seeds=$(SEEDS)) $(if $(FIRST_SEED),-first-seed=$(FIRST_SEED)) \
	$(if $(TRACE),-trace=$(TRACE))

.PHONY: test sim bench lint redis-up redis-down

# test starts $(REDIS_NODES) throwaway redis-server nodes, runs vet and the
# race-enabled tests against them, and always stops the nodes (also on failure
# or interrupt), exiting with the tests' status. Each step runs as a job in its
# own process group (set -m) and is waited for, so that a SIGINT/SIGTERM sent
# to make or to the recipe's shell reaches the traps at once; they interrupt
# the step's whole group (go and the test binaries) before the nodes stop.
test:
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/dlock-redis.XXXXXX"); pid=; \
	trap 'bash scripts/redis-nodes.sh stop "$$dir" || echo "make test: stopping redis nodes in $$dir failed" >&2; rm -rf "$$dir"' EXIT; \
	stop_child() { \
		[[ -n $$pid ]] || return 0; kill -TERM -- "-$$pid" 2>/dev/null || true; wait "$$pid" 2>/dev/null || true; \
		for _ in {1..50}; do kill -0 -- "-$$pid" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL -- "-$$pid" 2>/dev/null || true; }; \
	trap 'stop_child; exit 130' INT; trap 'stop_child; exit 143' TERM; \
	set -m; run() { echo "+ $$*"; "$$@" & pid=$$!; wait "$$pid" 2>/dev/null; pid=; }; \
	bash scripts/redis-nodes.sh start $(REDIS_NODES) "$$dir" >/dev/null; \
	export DLOCK_REDIS_ADDRS=$$(<"$$dir/addrs") DLOCK_REQUIRE_REDIS=1; \
	echo "DLOCK_REDIS_ADDRS=$$DLOCK_REDIS_ADDRS"; \
	run $(GO) vet ./...; \
	run $(GO) test -race -count=1 ./...

sim:
	$(GO) run ./sim/cmd/dlocksim $(strip $(SIM_FLAGS))

bench:
	bash bench/run.sh

lint:
	@out=$$(gofmt -l .); \
	if [[ -n $$out ]]; then echo "gofmt -l: these files need gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# redis-up starts nodes for local work in $(REDIS_DIR); use the printed export
# line, then `make redis-down`.
redis-up:
	@bash scripts/redis-nodes.sh start $(REDIS_NODES) $(REDIS_DIR) >/dev/null
	@echo "export DLOCK_REDIS_ADDRS=$$(<$(REDIS_DIR)/addrs)"

redis-down:
	bash scripts/redis-nodes.sh stop $(REDIS_DIR)
