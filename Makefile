# dlock build and test entry points. Every recipe runs in bash with
# -euo pipefail; `make test` is what CI runs (.ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
REDIS_NODES ?= 5
REDIS_DIR ?= .redis
POSTGRES_NODES ?= 3
POSTGRES_DIR ?= .postgres

# MODULES are the directories holding a go.mod: the root module and the
# modules of their own (postgres, etcd, cmd/dlock, bench). Each is vetted,
# linted and tested with its own go.mod (GOWORK=off: a go.work made for an
# editor must not change what is tested).
MODULES ?= $(sort $(patsubst %/,%,$(dir $(wildcard go.mod */go.mod cmd/*/go.mod))))

# make sim [CLASS=...] [SEED=...] [SEEDS=...] [FIRST_SEED=...] [TRACE=...]
SIM_FLAGS = $(if $(CLASS),-class=$(CLASS)) $(if $(SEED),-seed=$(SEED)) \
	$(if $(SEEDS),-seeds=$(SEEDS)) $(if $(FIRST_SEED),-first-seed=$(FIRST_SEED)) \
	$(if $(TRACE),-trace=$(TRACE))

.PHONY: test sim sim-fenced bench lint redis-up redis-down postgres-up postgres-down

# test starts throwaway servers: $(REDIS_NODES) redis-server nodes, $(POSTGRES_NODES)
# PostgreSQL servers (each its own initdb) and one etcd server, installing what
# is missing with apt-get; exports their addresses (DLOCK_REDIS_ADDRS,
# DLOCK_POSTGRES_URLS, DLOCK_ETCD_ENDPOINTS) with DLOCK_REQUIRE_REDIS/POSTGRES/ETCD=1,
# so that a test needing a server fails instead of skipping; then runs go vet
# and the race-enabled tests in every module of $(MODULES) (benchmarks do not
# run: no -bench), going on after a failure and listing the failed steps at the
# end. go vet runs with -race so that it shares the race-instrumented builds of
# the dependencies with go test (on a cold build cache that spares a second
# compilation of everything); files built only without the race detector are
# vetted by `make lint`. The servers are always stopped (also on failure or interrupt), and it
# exits with the steps' status. Each step runs as a job in its own process
# group (set -m) and is waited for, so that a SIGINT/SIGTERM sent to make or to
# the recipe's shell reaches the traps at once; they interrupt the step's whole
# group (go and the test binaries) before the servers stop.
test:
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/dlock-test.XXXXXX"); chmod a+x "$$dir"; pid=; failed=(); \
	stop_servers() { \
		bash scripts/redis-nodes.sh stop "$$dir/redis" || echo "make test: stopping redis nodes in $$dir/redis failed" >&2; \
		bash scripts/postgres.sh stop "$$dir/postgres" || echo "make test: stopping postgres in $$dir/postgres failed" >&2; \
		bash scripts/etcd.sh stop "$$dir/etcd" || echo "make test: stopping etcd in $$dir/etcd failed" >&2; \
		rm -rf "$$dir"; }; \
	trap stop_servers EXIT; \
	stop_child() { \
		[[ -n $$pid ]] || return 0; kill -TERM -- "-$$pid" 2>/dev/null || true; wait "$$pid" 2>/dev/null || true; \
		for _ in {1..50}; do kill -0 -- "-$$pid" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL -- "-$$pid" 2>/dev/null || true; }; \
	trap 'stop_child; exit 130' INT; trap 'stop_child; exit 143' TERM; \
	set -m; run() { local t0=$$SECONDS; echo "+ $$*"; "$$@" & pid=$$!; \
		if wait "$$pid" 2>/dev/null; then pid=; else pid=; failed+=("$$*"); fi; echo "  ($$((SECONDS - t0))s)"; }; \
	start=$$SECONDS; \
	bash scripts/redis-nodes.sh start $(REDIS_NODES) "$$dir/redis" >/dev/null; \
	bash scripts/postgres.sh start $(POSTGRES_NODES) "$$dir/postgres" >/dev/null; \
	bash scripts/etcd.sh start "$$dir/etcd" >/dev/null; \
	export DLOCK_REDIS_ADDRS=$$(<"$$dir/redis/addrs") DLOCK_POSTGRES_URLS=$$(<"$$dir/postgres/urls") \
		DLOCK_ETCD_ENDPOINTS=$$(<"$$dir/etcd/endpoints") \
		DLOCK_REQUIRE_REDIS=1 DLOCK_REQUIRE_POSTGRES=1 DLOCK_REQUIRE_ETCD=1 GOWORK=off; \
	echo "DLOCK_REDIS_ADDRS=$$DLOCK_REDIS_ADDRS"; \
	echo "DLOCK_POSTGRES_URLS=$$DLOCK_POSTGRES_URLS"; \
	echo "DLOCK_ETCD_ENDPOINTS=$$DLOCK_ETCD_ENDPOINTS"; \
	echo "servers up in $$((SECONDS - start))s; modules: $(MODULES)"; \
	for m in $(MODULES); do \
		run $(GO) -C "$$m" vet -race ./...; \
		run $(GO) -C "$$m" test -race -count=1 ./...; \
	done; \
	echo "make test: $$((SECONDS - start))s"; \
	if (($${#failed[@]})); then printf 'make test: FAILED: %s\n' "$${failed[@]}" >&2; exit 1; fi

sim:
	$(GO) run ./sim/cmd/dlocksim $(strip $(SIM_FLAGS))

# sim-fenced runs the fenced and guarded classes over 2000 fresh seeds (about
# 8 minutes on 2 cores): make sim-fenced [SEEDS=n] [FIRST_SEED=s].
sim-fenced:
	$(GO) run ./sim/cmd/dlocksim -class pause-fenced,clock-jump-fenced,restart-guarded \
		-seeds $(or $(SEEDS),2000) -first-seed $(or $(FIRST_SEED),$$(date +%s))

bench:
	bash bench/run.sh

# lint checks formatting, then runs go vet and staticcheck in every module.
lint:
	@out=$$(gofmt -l .); \
	if [[ -n $$out ]]; then echo "gofmt -l: these files need gofmt:"; echo "$$out"; exit 1; fi
	@export GOWORK=off; for m in $(MODULES); do \
		echo "+ $(GO) -C $$m vet ./..."; $(GO) -C "$$m" vet ./...; \
		echo "+ (cd $$m && $(STATICCHECK) ./...)"; (cd "$$m" && $(STATICCHECK) ./...); \
	done

# redis-up starts nodes for local work in $(REDIS_DIR); use the printed export
# line, then `make redis-down`.
redis-up:
	@bash scripts/redis-nodes.sh start $(REDIS_NODES) $(REDIS_DIR) >/dev/null
	@echo "export DLOCK_REDIS_ADDRS=$$(<$(REDIS_DIR)/addrs)"

redis-down:
	bash scripts/redis-nodes.sh stop $(REDIS_DIR)

# postgres-up starts $(POSTGRES_NODES) PostgreSQL servers for local work in
# $(POSTGRES_DIR); use the printed export line, then `make postgres-down`.
postgres-up:
	@bash scripts/postgres.sh start $(POSTGRES_NODES) $(POSTGRES_DIR) >/dev/null
	@echo "export DLOCK_POSTGRES_URLS=$$(<$(POSTGRES_DIR)/urls)"

postgres-down:
	bash scripts/postgres.sh stop $(POSTGRES_DIR)
	rm -rf $(POSTGRES_DIR)
