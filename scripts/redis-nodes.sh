#!/usr/bin/env bash
# redis-nodes.sh starts and stops independent, throwaway redis-server nodes on
# free 127.0.0.1 ports, for integration tests and benchmarks.
#
#   scripts/redis-nodes.sh start <count> <dir>   start <count> nodes; pid, log and
#                                                port files go in <dir>; <dir>/addrs
#                                                gets "127.0.0.1:p1,127.0.0.1:p2,..."
#   scripts/redis-nodes.sh stop <dir>            stop every node started in <dir>
#                                                and wait until they have exited
#
# Nodes keep no data on disk (--save "" --appendonly no) and run daemonized.
# redis-server is installed with apt-get when it is missing.
# Environment: REDIS_NODES_PORT_MIN/REDIS_NODES_PORT_MAX bound the ports tried
# (default 20000-32000, below Linux's usual ephemeral range).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	echo "usage: $prog start <count> <dir> | stop <dir>" >&2
	exit 2
}

# alive PID: true while PID is a running (not zombie) redis-server process.
alive() {
	running "$1" redis-server
}

ensure_redis() {
	if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
		return 0
	fi
	echo "$prog: redis-server not found; installing it with apt-get" >&2
	apt_install redis-server redis-server
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
		die "redis-server or redis-cli still missing after apt-get install"
}

# start_node I PORT: starts node I on PORT and waits until it answers; fails
# (after cleaning up) when the port was taken or the node did not come up.
start_node() {
	local i=$1 port=$2
	local pidf="$dir/node$i.pid" logf="$dir/node$i.log"
	rm -f "$pidf"
	local off
	off=$(log_size "$logf")
	# redis-server writes its pid file only after it has bound the port, so
	# a pid file means this process owns the port.
	redis-server --port "$port" --bind 127.0.0.1 \
		--daemonize yes --pidfile "$pidf" --logfile "$logf" --dir "$dir" \
		--save "" --appendonly no --dbfilename "node$i.rdb" \
		>>"$logf" 2>&1 || return 1
	local pid="" tries=0
	while ((tries < 200)); do # up to ~10s
		if [[ -s $pidf ]]; then
			pid=$(<"$pidf")
			if alive "$pid" && [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
				# Make sure the node answering is ours, not a stranger's.
				local got
				got=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null |
					tr -d '\r' | sed -n 's/^process_id://p')
				if [[ $got == "$pid" ]]; then
					echo "$port" >"$dir/node$i.port"
					return 0
				fi
			fi
		elif [[ -n $pid ]] || log_since "$logf" "$off" |
			grep -qiE 'Address already in use|Could not create server TCP'; then
			# Port taken (the log is shared by all attempts: read only ours).
			break
		fi
		sleep 0.05
		tries=$((tries + 1))
	done
	if [[ -s $pidf ]]; then
		pid=$(<"$pidf")
		alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidf"
	return 1
}

cmd_start() {
	(($# == 2)) || usage
	local count=$1
	[[ $count =~ ^[1-9][0-9]*$ ]] || die "count must be a positive integer, got '$count'"
	mkdir -p "$2"
	dir=$(cd "$2" && pwd)
	for f in "$dir"/node*.pid; do
		[[ -e $f ]] || continue
		if alive "$(<"$f")"; then
			die "nodes already running in $dir; run '$prog stop $dir' first"
		fi
		rm -f "$f"
	done
	rm -f "$dir"/node*.port "$dir/addrs"
	ensure_redis

	# On any failure, stop what this call started.
	trap 'cmd_stop "$dir" >/dev/null 2>&1 || true' ERR

	local lo=${REDIS_NODES_PORT_MIN:-20000} hi=${REDIS_NODES_PORT_MAX:-32000}
	local i port addrs=()
	for ((i = 1; i <= count; i++)); do
		start_on_free_port port 50 "node $i" "$dir/node$i.log" "$lo" "$hi" start_node "$i"
		addrs+=("127.0.0.1:$port")
	done
	trap - ERR
	local IFS=,
	echo "${addrs[*]}" >"$dir/addrs"
	echo "${addrs[*]}"
}

cmd_stop() {
	(($# == 1)) || usage
	local d=$1
	[[ -d $d ]] || return 0
	local f pid pids=()
	for f in "$d"/node*.pid; do
		[[ -e $f ]] || continue
		pid=$(<"$f") || continue
		pids+=("$pid")
	done
	# Wait up to ~10s for a clean exit, then force it.
	stop_pids redis-server "TERM KILL" ${pids[@]+"${pids[@]}"}
	rm -f "$d"/node*.pid "$d"/node*.port "$d"/node*.rdb "$d/addrs"
}

dispatch "$@"
