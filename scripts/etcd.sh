#!/usr/bin/env bash
# etcd.sh starts and stops one throwaway etcd server on free 127.0.0.1 ports,
# for integration tests and benchmarks.
#
#   scripts/etcd.sh start <dir>   start one single-member etcd server whose data
#                                 dir, log and pid file go in <dir>; waits until
#                                 it answers; <dir>/endpoints gets its client URL
#                                 ("http://127.0.0.1:PORT"), also printed
#   scripts/etcd.sh stop <dir>    stop the server started in <dir>, wait until it
#                                 has exited, and delete its data
#
# The server starts from an empty data dir (<dir>/data, wiped on start and on
# stop) and runs detached in a session of its own, with its output in
# <dir>/etcd.log. etcd-server is installed with apt-get when the etcd binary
# is missing.
#
# The election timeout is 500ms (etcd's default is 1s), which makes the
# server's minimum lease TTL 1s (1.5 election timeouts, rounded up to a
# second) instead of 2s: a 1s lease then lives 1s, as dlock's etcd node
# assumes when it reports a TTL granularity of one second. A single member on
# loopback elects itself at once either way.
# Environment: ETCD_PORT_MIN/ETCD_PORT_MAX bound the ports tried (default
# 20000-32000, below Linux's usual ephemeral range); ETCD_BIN names the binary
# (default: etcd from PATH).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	echo "usage: $prog start <dir> | stop <dir>" >&2
	exit 2
}

# alive PID: true while PID is a running etcd process.
alive() {
	running "$1" etcd
}

ensure_etcd() {
	etcd_bin=${ETCD_BIN:-}
	if [[ -z $etcd_bin ]]; then
		etcd_bin=$(command -v etcd || true)
		# Debian keeps it in /usr/bin, but a PATH without it is possible.
		[[ -z $etcd_bin && -x /usr/bin/etcd ]] && etcd_bin=/usr/bin/etcd
	fi
	if [[ -n $etcd_bin ]]; then
		[[ -x $etcd_bin ]] || die "ETCD_BIN=$etcd_bin is not executable"
		return 0
	fi
	echo "$prog: etcd not found; installing etcd-server with apt-get" >&2
	apt_install etcd etcd-server
	etcd_bin=$(command -v etcd || true)
	[[ -z $etcd_bin && -x /usr/bin/etcd ]] && etcd_bin=/usr/bin/etcd
	[[ -n $etcd_bin ]] || die "etcd still missing after apt-get install etcd-server"
}

# healthy PORT: true when the etcd on 127.0.0.1:PORT answers /health with
# health true (it has a leader and serves requests). Plain bash, no curl.
healthy() {
	local reply
	reply=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		timeout 2 cat <&3
	) || return 1
	[[ $reply == *'"health":"true"'* ]]
}

# start_server CPORT PPORT: starts the server with client port CPORT and peer
# port PPORT and waits until it answers; fails (after cleaning up) when a port
# was taken or the server did not come up.
start_server() {
	local cport=$1 pport=$2
	local pidf="$dir/etcd.pid" logf="$dir/etcd.log"
	rm -rf "$dir/data" "$pidf"
	mkdir -p "$dir/data"
	chmod 700 "$dir/data"
	local off
	off=$(log_size "$logf")
	# setsid: a session of its own, so that a ^C to the caller's terminal
	# does not reach the server; stop ends it. This shell has no job
	# control, so the background job is no group leader and setsid execs
	# in place: $! is etcd's pid.
	setsid "$etcd_bin" --name dlock --data-dir "$dir/data" \
		--listen-client-urls "http://127.0.0.1:$cport" \
		--advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "dlock=http://127.0.0.1:$pport" \
		--initial-cluster-state new --initial-cluster-token "dlock-$cport" \
		--heartbeat-interval 100 --election-timeout 500 \
		--logger zap --log-outputs stderr \
		</dev/null >>"$logf" 2>&1 &
	local pid=$!
	echo "$pid" >"$pidf"
	local tries=0
	while ((tries < 300)); do # up to ~15s (and longer while health checks hang)
		# Until setsid has exec'd etcd the process has another name.
		if ! running "$pid"; then
			break # exited: most likely a port was taken
		fi
		# Answered, and our server's log says it serves that port (a
		# stranger on the client port would have made it exit on bind).
		if healthy "$cport" && alive "$pid" &&
			log_since "$logf" "$off" |
			grep -F '"msg":"serving client' | grep -qF "\"address\":\"127.0.0.1:$cport\""; then
			echo "http://127.0.0.1:$cport" >"$dir/endpoints"
			return 0
		fi
		sleep 0.05
		tries=$((tries + 1))
	done
	if running "$pid"; then
		kill -KILL "$pid" 2>/dev/null || true
		local n=0
		while running "$pid" && ((n < 100)); do
			sleep 0.05
			n=$((n + 1))
		done
	fi
	if ! log_since "$logf" "$off" | grep -q 'address already in use'; then
		echo "$prog: etcd did not come up on ports $cport/$pport; last log lines:" >&2
		log_since "$logf" "$off" | tail -n 5 >&2 || true
	fi
	rm -f "$pidf"
	rm -rf "$dir/data"
	return 1
}

cmd_start() {
	(($# == 1)) || usage
	mkdir -p "$1"
	dir=$(cd "$1" && pwd)
	if [[ -e $dir/etcd.pid ]]; then
		if alive "$(<"$dir/etcd.pid")"; then
			die "etcd already running in $dir; run '$prog stop $dir' first"
		fi
		rm -f "$dir/etcd.pid"
	fi
	rm -f "$dir/endpoints"
	ensure_etcd

	local lo=${ETCD_PORT_MIN:-20000} hi=${ETCD_PORT_MAX:-32000}
	((hi > lo)) || die "ETCD_PORT_MAX ($hi) must be above ETCD_PORT_MIN ($lo)"
	local cport pport attempts=0
	while :; do
		attempts=$((attempts + 1))
		((attempts <= 20)) || die "could not start etcd after 20 attempts; see $dir/etcd.log"
		pick_port cport "$lo" "$hi" || continue
		pick_port pport "$lo" "$hi" || continue
		((cport != pport)) || continue
		start_server "$cport" "$pport" && break
	done
	cat "$dir/endpoints"
}

cmd_stop() {
	(($# == 1)) || usage
	local d=$1
	[[ -d $d ]] || return 0
	local pid=""
	if [[ -e $d/etcd.pid ]]; then
		pid=$(<"$d/etcd.pid") || pid=""
	fi
	# Wait up to ~10s for a clean exit, then force it.
	stop_pids etcd "TERM KILL" ${pid:+"$pid"}
	rm -rf "$d/data"
	rm -f "$d/etcd.pid" "$d/endpoints"
}

dispatch "$@"
