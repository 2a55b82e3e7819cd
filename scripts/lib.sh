# shellcheck shell=bash
# lib.sh holds the helpers shared by the scripts that start and stop
# throwaway servers (redis-nodes.sh, postgres.sh, etcd.sh). Each of them
# sources it, after set -euo pipefail, with
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# and defines usage, cmd_start and cmd_stop, which dispatch calls.

prog=${0##*/}

die() {
	echo "$prog: $*" >&2
	exit 1
}

# dispatch ARGS...: runs "cmd_start ARGS..." for "start ARGS...", "cmd_stop
# ARGS..." for "stop ARGS...", and usage for anything else.
dispatch() {
	(($# >= 1)) || usage
	case $1 in
	start)
		shift
		cmd_start "$@"
		;;
	stop)
		shift
		cmd_stop "$@"
		;;
	*) usage ;;
	esac
}

# running PID [COMM]: true while PID is a running (not zombie) process, whose
# name starts with COMM when given (else the pid was reused by something
# else). Servers outlive the script that started them and are reparented to
# PID 1, which in a container may never reap them, so a zombie counts as gone.
running() {
	local pid=$1 want=${2:-} comm state
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	if [[ -d /proc ]] && [[ -r /proc/self/stat ]]; then
		[[ -r /proc/$pid/stat ]] || return 1
		comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
		[[ $comm == "$want"* ]] || return 1 # pid reused by something else
		state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
		[[ $state != Z && $state != X ]]
	else
		kill -0 "$pid" 2>/dev/null
	fi
}

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port VAR LO HI: sets VAR to a random port in [LO, HI]; false when
# something already accepts connections on it (see port_in_use).
pick_port() {
	printf -v "$1" %d "$(($2 + (RANDOM * 32768 + RANDOM) % ($3 - $2 + 1)))"
	! port_in_use "${!1}"
}

# start_on_free_port VAR TRIES WHAT LOG LO HI START ARGS...: calls START
# ARGS... PORT with random free ports in [LO, HI] until it succeeds, and
# sets VAR to the port. After TRIES failed attempts it prints the last lines
# of LOG, stops what the script started in $dir (cmd_stop) and dies; WHAT
# names the server in the message.
start_on_free_port() {
	local var=$1 tries=$2 what=$3 log=$4 lo=$5 hi=$6 attempts=0 p
	shift 6
	while :; do
		attempts=$((attempts + 1))
		if ((attempts > tries)); then
			echo "$prog: could not start $what; last log lines:" >&2
			tail -n 5 "$log" >&2 2>/dev/null || true
			cmd_stop "$dir" >/dev/null 2>&1 || true
			die "gave up after $tries attempts"
		fi
		pick_port p "$lo" "$hi" || continue
		"$@" "$p" && break
	done
	printf -v "$var" %s "$p"
}

# log_size FILE: prints FILE's size in bytes, 0 when it does not exist. Logs
# are appended to by every attempt: log_since reads only what came after.
log_size() {
	if [[ -e $1 ]]; then
		wc -c <"$1"
	else
		echo 0
	fi
}

# log_since FILE OFFSET: prints FILE from byte OFFSET (a log_size) on.
log_since() {
	tail -c +"$(($2 + 1))" "$1" 2>/dev/null
}

# apt_install NAME PACKAGE: installs the Debian package PACKAGE with apt-get
# (through sudo when not root), keeping the package's own service from
# starting: the scripts run their own servers. NAME is what is missing, for
# the error when there is neither root nor sudo.
apt_install() {
	local name=$1 pkg=$2
	local sudo=()
	if [[ $(id -u) != 0 ]]; then
		command -v sudo >/dev/null || die "$name is missing and not root (no sudo) to install it"
		sudo=(sudo)
	fi
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod +x "$policy"
		made_policy=1
	fi
	local rc=0
	{
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
	} || rc=$?
	if ((made_policy)); then
		"${sudo[@]}" rm -f "$policy"
	fi
	((rc == 0)) || die "apt-get install $pkg failed (exit $rc)"
}

# stop_pids COMM SIGNALS PID...: stops those of the PIDs that are running as
# COMM (see running) and waits until they have exited. SIGNALS is a
# space-separated list of signal names, e.g. "TERM KILL": the first is sent
# at once; whatever is left after ~10s gets the second, and each further
# signal follows ~5s after the one before. Dies when a process outlives the
# last signal by ~5s.
stop_pids() {
	local comm=$1 sigs pid pids=() left tries=0
	read -r -a sigs <<<"$2"
	shift 2
	for pid; do
		if running "$pid" "$comm"; then
			kill -"${sigs[0]}" "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	while :; do
		left=()
		for pid in ${pids[@]+"${pids[@]}"}; do
			running "$pid" "$comm" && left+=("$pid")
		done
		((${#left[@]} == 0)) && break
		if ((tries > 100 + 100 * ${#sigs[@]})); then
			die "could not stop $comm pids: ${left[*]}"
		elif ((tries >= 200 && tries % 100 == 0 && tries / 100 - 1 < ${#sigs[@]})); then
			kill -"${sigs[tries / 100 - 1]}" "${left[@]}" 2>/dev/null || true
		fi
		sleep 0.05
		tries=$((tries + 1))
	done
}
