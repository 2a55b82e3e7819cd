#!/usr/bin/env bash
# postgres.sh starts and stops independent, throwaway PostgreSQL servers on
# free 127.0.0.1 ports, for integration tests and benchmarks. Each server is
# its own cluster (its own initdb), so the servers share nothing.
#
#   scripts/postgres.sh start <count> <dir>   start <count> servers in <dir>/pg1 .. pgN;
#                                             <dir>/urls gets "postgres://...,postgres://..."
#   scripts/postgres.sh stop <dir>            stop every server started in <dir>
#                                             and wait until they have exited
#
# start on a <dir> whose servers were stopped starts them again with their
# data and on their old ports (a restart); servers already running are kept.
#
# Servers trust every local connection (user postgres, database postgres,
# sslmode=disable), listen on 127.0.0.1 only, have no Unix socket, and run
# with fsync=off (data survives a server crash, not an OS crash: enough for
# tests). PostgreSQL refuses to run as root: as root the servers run as the
# user $PG_USER (default dlocktest, created with useradd when missing).
#
# Binaries: initdb, pg_ctl and postgres from $PG_BINDIR, else from PATH, else
# the newest /usr/lib/postgresql/*/bin; when none is found, the Debian package
# postgresql is installed with apt-get.
# Environment: PG_PORT_MIN/PG_PORT_MAX bound the ports tried (default
# 32100-40000, apart from redis-nodes.sh's range and below Linux's usual
# ephemeral range).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	echo "usage: $prog start <count> <dir> | stop <dir>" >&2
	exit 2
}

# alive PID: true while PID is a running (not zombie) postgres process.
alive() {
	running "$1" postgres
}

# find_bindir prints the directory holding initdb, pg_ctl and postgres.
find_bindir() {
	local d
	if [[ -n ${PG_BINDIR:-} ]]; then
		echo "$PG_BINDIR"
		return 0
	fi
	if d=$(command -v initdb) && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
		dirname "$d"
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

ensure_postgres() {
	if bindir=$(find_bindir); then
		return 0
	fi
	echo "$prog: PostgreSQL server binaries not found; installing postgresql with apt-get" >&2
	[[ $(id -u) == 0 ]] || die "PostgreSQL is missing and not root to install it"
	apt_install PostgreSQL postgresql
	bindir=$(find_bindir) || die "initdb, pg_ctl or postgres still missing after apt-get install postgresql"
}

# as_owner CMD...: runs CMD as the servers' owner ($PG_USER when root).
as_owner() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u "$owner" -- "$@"
	else
		"$@"
	fi
}

ensure_owner() {
	if [[ $(id -u) != 0 ]]; then
		owner=$(id -un)
		return 0
	fi
	owner=${PG_USER:-dlocktest}
	if ! id -u "$owner" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$owner" ||
			id -u "$owner" >/dev/null 2>&1 || die "useradd $owner failed"
	fi
}

# postmaster_pid I: the pid of server I from its pid file, if any.
postmaster_pid() {
	local f="$dir/pg$1/data/postmaster.pid"
	[[ -r $f ]] && head -n 1 "$f"
}

# init_server I: creates server I's cluster.
init_server() {
	local i=$1 d="$dir/pg$1"
	rm -rf "$d"
	mkdir -p "$d"
	[[ $(id -u) == 0 ]] && chown "$owner" "$d"
	as_owner "$bindir/initdb" --pgdata="$d/data" --username=postgres --auth=trust \
		--encoding=UTF8 --locale=C --no-sync >"$d/initdb.log" 2>&1 ||
		{
			tail -n 20 "$d/initdb.log" >&2
			return 1
		}
}

# start_server I PORT: starts server I on PORT and waits until it accepts
# connections; fails when it did not come up (e.g. the port was taken).
start_server() {
	local i=$1 port=$2 d="$dir/pg$1"
	rm -f "$d/data/postmaster.pid"
	as_owner "$bindir/pg_ctl" --pgdata="$d/data" --log="$d/server.log" --wait --timeout=30 \
		--silent -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='' \
-c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB" \
		start >>"$d/pg_ctl.log" 2>&1 || {
		local pid
		pid=$(postmaster_pid "$i") && alive "$pid" && kill -KILL "$pid" 2>/dev/null
		return 1
	}
	# The server answering must be ours: its pid file names the port.
	local pid
	pid=$(postmaster_pid "$i") && alive "$pid" || return 1
	[[ $(sed -n 4p "$d/data/postmaster.pid") == "$port" ]] || return 1
	echo "$port" >"$d/port"
}

cmd_start() {
	(($# == 2)) || usage
	local count=$1
	[[ $count =~ ^[1-9][0-9]*$ ]] || die "count must be a positive integer, got '$count'"
	mkdir -p "$2"
	dir=$(cd "$2" && pwd)
	rm -f "$dir/urls"
	ensure_postgres
	ensure_owner
	# The servers' owner must reach its directories under <dir>.
	if [[ $(id -u) == 0 ]]; then
		chmod a+x "$dir"
		as_owner test -x "$dir" ||
			die "user $owner cannot reach $dir: make its parent directories searchable (chmod a+x)"
	fi

	# On any failure, stop what this call started.
	trap 'cmd_stop "$dir" >/dev/null 2>&1 || true' ERR

	local lo=${PG_PORT_MIN:-32100} hi=${PG_PORT_MAX:-40000}
	local i port pid urls=()
	for ((i = 1; i <= count; i++)); do
		if pid=$(postmaster_pid "$i") && alive "$pid" && [[ -s $dir/pg$i/port ]]; then
			port=$(<"$dir/pg$i/port") # already running
		elif [[ -s $dir/pg$i/port && -f $dir/pg$i/data/PG_VERSION ]]; then
			port=$(<"$dir/pg$i/port") # stopped: start again with its data
			start_server "$i" "$port" || {
				tail -n 5 "$dir/pg$i/server.log" >&2 2>/dev/null || true
				cmd_stop "$dir" >/dev/null 2>&1 || true
				die "could not restart server $i on port $port"
			}
		else
			init_server "$i" || {
				cmd_stop "$dir" >/dev/null 2>&1 || true
				die "initdb of server $i failed"
			}
			start_on_free_port port 20 "server $i" "$dir/pg$i/server.log" "$lo" "$hi" start_server "$i"
		fi
		urls+=("postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable")
	done
	trap - ERR
	local IFS=,
	echo "${urls[*]}" >"$dir/urls"
	echo "${urls[*]}"
}

cmd_stop() {
	(($# == 1)) || usage
	local d=$1
	[[ -d $d ]] || return 0
	dir=$(cd "$d" && pwd)
	local f pid pids=()
	for f in "$dir"/pg*/data/postmaster.pid; do
		[[ -e $f ]] || continue
		pid=$(head -n 1 "$f") || continue
		pids+=("$pid")
	done
	# A fast shutdown (INT); after ~10s an immediate one (QUIT); ~5s later,
	# force it.
	stop_pids postgres "INT QUIT KILL" ${pids[@]+"${pids[@]}"}
	rm -f "$dir/urls"
}

dispatch "$@"
