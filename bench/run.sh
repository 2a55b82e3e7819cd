#!/usr/bin/env bash
# run.sh runs dlock's benchmarks side by side with redsync, redislock and a
# plain go-redis floor, on 7 throwaway local redis-server nodes, and writes
# BENCHMARKS.md at the repository root (make bench).
#
#   bench/run.sh                 full run: 6 runs, -benchtime 1s (~10 min on 2 cores)
#   QUICK=1 bench/run.sh         smoke run: 1 run, -benchtime 200ms, 1,000 held
#                                locks; the report goes to bench/out/BENCHMARKS.quick.md
#
# Environment: COUNT (runs), BENCHTIME, BENCH (a -bench regexp), HELD (scenario 6's
# lock count), OUT (output directory, default bench/out), REPORT (report path).
# Raw output: $OUT/raw.txt; benchstat: $OUT/benchstat.txt.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/.." && pwd)
cd "$bench_dir"

if [[ ${QUICK:-0} == 1 ]]; then
	count=${COUNT:-1} benchtime=${BENCHTIME:-200ms} held=${HELD:-1000}
	report=${REPORT:-$bench_dir/out/BENCHMARKS.quick.md}
else
	count=${COUNT:-6} benchtime=${BENCHTIME:-1s} held=${HELD:-10000}
	report=${REPORT:-$root/BENCHMARKS.md}
fi
out=${OUT:-$bench_dir/out}
mkdir -p "$out" "$(dirname "$report")"

nodes=$(mktemp -d "${TMPDIR:-/tmp}/dlock-bench-nodes.XXXXXX")
cleanup() {
	"$root/scripts/redis-nodes.sh" stop "$nodes" || true
	rm -rf "$nodes"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/scripts/redis-nodes.sh" start 7 "$nodes"
DLOCK_REDIS_ADDRS=$(cat "$nodes/addrs")
export DLOCK_REDIS_ADDRS DLOCK_BENCH_HELD=$held

# The test binary is built once and run $count times with -test.count 1, so
# that the libraries interleave: a change in the machine's load during the
# run hits every library rather than the one that happens to be running.
go test -c -o "$out/bench.test" .
cmd=("$out/bench.test" -test.run '^$' -test.bench "${BENCH:-.}" -test.benchmem -test.count 1 -test.benchtime "$benchtime" -test.timeout 60m)
echo "run.sh: ${cmd[*]}, $count times (DLOCK_BENCH_HELD=$held, 7 nodes: $DLOCK_REDIS_ADDRS)" >&2
start=$(date +%s) load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$out/raw.txt"
failed=0
for i in $(seq "$count"); do
	echo "run.sh: run $i of $count" >&2
	# A failing benchmark must not throw away the others: the report lists
	# failures, and run.sh exits 1 at the end.
	"${cmd[@]}" | tee -a "$out/raw.txt" || failed=1
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "run.sh: benchmarks took $(($(date +%s) - start))s" >&2

go tool benchstat -col /lib "$out/raw.txt" >"$out/benchstat.txt"

how="bench/run.sh, make bench"
if [[ -n ${BENCH:-} || -n ${COUNT:-} ]]; then
	how="${COUNT:+COUNT=$COUNT }${BENCH:+BENCH='$BENCH' }bash bench/run.sh"
fi
BENCH_NPROC=$(nproc) \
	BENCH_CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || uname -m) \
	BENCH_GO=$(go version | cut -d' ' -f3-) \
	BENCH_REDIS=$(redis-server --version | sed 's/^Redis server //') \
	BENCH_DATE=$(date -u +%Y-%m-%d) BENCH_LOAD_BEFORE=$load_before BENCH_LOAD_AFTER=$load_after \
	go run ./cmd/benchreport -raw "$out/raw.txt" -benchstat "$out/benchstat.txt" -notes "$bench_dir/analysis.md" \
	${BENCH:+-not-run "the run was limited to -test.bench '$BENCH'"} \
	-cmd "cd bench && go test -c -o out/bench.test . && for i in \$(seq $count); do DLOCK_BENCH_HELD=$held out/bench.test -test.run '^\$' -test.bench '${BENCH:-.}' -test.benchmem -test.count 1 -test.benchtime $benchtime; done  ($how)" >"$report.tmp"
mv "$report.tmp" "$report"
echo "run.sh: wrote $report" >&2
if ((failed)); then
	echo "run.sh: some benchmarks failed; see the Failures section of $report and $out/raw.txt" >&2
	exit 1
fi
