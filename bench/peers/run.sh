#!/usr/bin/env bash
# bench/peers/run.sh — the same workload through this project and through
# syslog-ng, into the same receiver, in one run; prints them side by side.
#
#   bench/peers/run.sh [BUILD_DIR]      (default: build-rel, then build)
#   EVENTS=N   events per run (default 300000), 190-byte messages
#   KILL=0     skip the SIGKILL runs
#
# The workload (bench/peers/peer-producer.c): N events, each naming its
# number, into
#   project   a C program calling mlog() (commit mode, the library's
#             defaults) -> spool -> spool-agent with its defaults (no
#             configuration file) -> HTTP batches
#   syslog-ng the same messages as lines into a Unix stream socket ->
#             syslog-ng (bench/peers/syslog-ng.conf: reliable disk buffer,
#             http destination, batches of up to 1000, 4 workers) -> HTTP
#             batches
# and both into `mlog-receiver --any-json` on 127.0.0.1 (counts every event
# of a {"logs": [...]} batch, checks no Master Log field), storing each
# event to a file from which the run counts what arrived.
#
# Per side: events/s from the producer's start until the receiver holds
# all N; CPU seconds per million events of the producer and the daemon
# together (and each alone), from GNU time.  Then, unless KILL=0, a second
# run per side in which the daemon (spool-agent, syslog-ng) is killed with
# SIGKILL once a third of the events arrived and started again at once:
# events lost (never arrived) and duplicated (arrived more than once).
#
# syslog-ng is installed from Debian (syslog-ng-core, syslog-ng-mod-http)
# when absent: only by this script, never by the tests or CI.  It runs in
# the foreground with its configuration, persist file, control socket,
# pid file and disk buffer in this run's temporary folder, listens on
# nothing but that folder's socket, and sends only to 127.0.0.1.  Every
# process this script starts is stopped by its pid at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-}
if [ -z "$build" ]; then
	if [ -x "$root/build-rel/bench/peers/peer-producer" ]; then build=$root/build-rel; else build=$root/build; fi
fi
EVENTS=${EVENTS:-300000}
KILL=${KILL:-1}
receiver=$build/tools/receiver/mlog-receiver
agent=$build/agent/spool-agent
producer=$build/bench/peers/peer-producer
for x in "$receiver" "$agent" "$producer"; do
	[ -x "$x" ] || { echo "run.sh: $x not built (ninja -C $build)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "run.sh: needs GNU time (/usr/bin/time)" >&2; exit 2; }

http_module() { ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; }
if ! command -v syslog-ng >/dev/null 2>&1 || ! http_module; then
	echo "run.sh: installing syslog-ng-core and syslog-ng-mod-http (Debian)" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		syslog-ng-core syslog-ng-mod-http >/dev/null
fi
syslog_ng=$(command -v syslog-ng)
syslog_ng_version=$("$syslog_ng" --version 2>/dev/null | head -1)

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/peers.XXXXXX")
# At exit: what is still running of this script's own jobs (GNU time and
# the program it measures, the receiver), by pid; a job not yet reaped
# cannot have had its pid reused.
cleanup() {
	local j c
	for j in $(jobs -p); do
		for c in $(pgrep -P "$j" || true); do kill -KILL "$c" 2>/dev/null || true; done
		kill -KILL "$j" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# the child of a `/usr/bin/time` started as $1 (the program it measures)
child_of() {
	local c=""
	for _ in $(seq 100); do
		c=$(pgrep -P "$1" | head -1 || true)
		[ -n "$c" ] && { echo "$c"; return; }
		sleep 0.02
	done
	echo "run.sh: no child of $1" >&2
	exit 1
}
cpu_of() { awk '{print $1 + $2}' "$1"; }

# ---- the receiver: one per run ----
rx_start() { # $1: name
	local out=$tmp/$1.jsonl port=$tmp/$1.port
	"$receiver" --any-json --listen 127.0.0.1 --port 0 --port-file "$port" --out "$out" \
		--max-batch-events 100000 --max-batch-bytes 256M --max-body 256M >/dev/null 2>"$tmp/$1.rx.err" &
	rx_pid=$!
	for _ in $(seq 250); do [ -s "$port" ] && break; sleep 0.02; done
	rx_port=$(awk '{print $1}' "$port")
	rx_out=$out
}
rx_stop() { kill -TERM "$rx_pid" 2>/dev/null || true; wait "$rx_pid" 2>/dev/null || true; }
rx_accepted() {
	curl -s "http://127.0.0.1:$rx_port/stats" | grep -o '"accepted":[0-9]*' | head -1 | cut -d: -f2
}
# waits until the receiver holds $1 events, or its count stood still for
# $2 seconds (with the producer $3 done); prints the count
rx_wait() {
	local want=$1 still=$2 prod=$3 last=-1 since
	since=$(now)
	while :; do
		local a
		a=$(rx_accepted)
		a=${a:-0}
		[ "$a" -ge "$want" ] && { echo "$a"; return; }
		if [ "$a" != "$last" ]; then
			last=$a
			since=$(now)
		elif ! kill -0 "$prod" 2>/dev/null &&
			awk -v a="$(now)" -v b="$since" -v s="$still" 'BEGIN{exit !(a - b > s)}'; then
			echo "$a"
			return
		fi
		sleep 0.05
	done
}
# unique, duplicated and lost events of the out file
tally() { # $1: file
	grep -o 'seq=[0-9]\{10\}' "$1" | sort | uniq -c |
		awk -v n="$EVENTS" '{u++; t += $1} END {printf "%d %d %d\n", u, t - u, n - u}'
}

# ---- the two daemons ----
agent_start() { # $1: spool, $2: time file
	/usr/bin/time -f "%U %S" -o "$2" "$agent" --spool "$1" \
		--endpoint "http://127.0.0.1:$rx_port" --log-level warning 2>>"$tmp/agent.err" &
	daemon_time=$!
	daemon_pid=$(child_of "$daemon_time")
}
syslog_start() { # $1: folder, $2: time file
	local d=$1
	mkdir -p "$d/buffer"
	sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$rx_port|g" "$here/syslog-ng.conf" >"$d/syslog-ng.conf"
	rm -f "$d/in.sock"
	/usr/bin/time -f "%U %S" -o "$2" "$syslog_ng" -F -f "$d/syslog-ng.conf" -R "$d/persist" \
		-c "$d/ctl" --pidfile "$d/pid" 2>>"$tmp/syslog-ng.err" &
	daemon_time=$!
	daemon_pid=$(child_of "$daemon_time")
	for _ in $(seq 500); do [ -S "$d/in.sock" ] && return; sleep 0.02; done
	echo "run.sh: syslog-ng did not start:" >&2
	cat "$tmp/syslog-ng.err" >&2
	exit 1
}
daemon_stop() {
	kill -TERM "$daemon_pid" 2>/dev/null || true
	wait "$daemon_time" 2>/dev/null || true
}

# ---- one run: $1 side (project|syslog-ng), $2 kill (0|1) ----
run() {
	local side=$1 kill=$2 name=$1-$2 spool=$tmp/$1-$2-spool d=$tmp/$1-$2
	mkdir -p "$d"
	rx_start "$name"
	if [ "$side" = project ]; then
		mkdir -p "$spool"
		agent_start "$spool" "$d/daemon.time"
	else
		syslog_start "$d" "$d/daemon.time"
	fi
	local t0 t1 prod
	t0=$(now)
	if [ "$side" = project ]; then
		/usr/bin/time -f "%U %S" -o "$d/producer.time" env MASTER_LOG_SPOOL_DIR="$spool" \
			MASTER_LOG_SPAWN_AGENT=false MASTER_LOG_ENDPOINT="http://127.0.0.1:$rx_port" \
			"$producer" mlog "$EVENTS" 2>"$d/producer.err" &
	else
		/usr/bin/time -f "%U %S" -o "$d/producer.time" \
			"$producer" socket "$d/in.sock" "$EVENTS" 2>"$d/producer.err" &
	fi
	prod=$!
	if [ "$kill" = 1 ]; then
		rx_wait $((EVENTS / 3)) 30 "$prod" >/dev/null
		kill -KILL "$daemon_pid" 2>/dev/null || true
		wait "$daemon_time" 2>/dev/null || true
		if [ "$side" = project ]; then
			agent_start "$spool" "$d/daemon2.time"
		else
			syslog_start "$d" "$d/daemon2.time"
		fi
	fi
	local got
	if [ "$kill" = 1 ]; then
		# duplicates count too: wait for the count to stand still
		got=$(rx_wait $((EVENTS * 100)) 5 "$prod")
	else
		got=$(rx_wait "$EVENTS" 10 "$prod")
	fi
	t1=$(now)
	wait "$prod" || echo "run.sh: $name: the producer failed: $(cat "$d/producer.err")" >&2
	daemon_stop
	rx_stop
	local pc dc
	pc=$(cpu_of "$d/producer.time")
	dc=$(cpu_of "$d/daemon.time")
	[ -f "$d/daemon2.time" ] && dc=$(awk -v a="$dc" -v b="$(cpu_of "$d/daemon2.time")" 'BEGIN{print a + b}')
	read -r uniq dups lost < <(tally "$rx_out")
	echo "$side $kill $got $t0 $t1 $pc $dc $uniq $dups $lost" >>"$tmp/results"
	rm -rf "$spool" "$d/buffer" "$rx_out"
}

echo "run.sh: $EVENTS events per run; $syslog_ng_version; temp $tmp" >&2
for side in project syslog-ng; do
	echo "run.sh: $side ..." >&2
	run "$side" 0
done
if [ "$KILL" = 1 ]; then
	for side in project syslog-ng; do
		echo "run.sh: $side, daemon killed with SIGKILL mid-run ..." >&2
		run "$side" 1
	done
fi

awk -v n="$EVENTS" -v host="$(hostname)" -v cpus="$(nproc)" -v ver="$syslog_ng_version" \
	-v date="$(date -u +%Y-%m-%dT%H:%MZ)" '
function f(x) { return sprintf("%.0f", x) }
$2 == 0 {
	side[$1] = 1; eps[$1] = $3 / ($5 - $4); pc[$1] = $6; dc[$1] = $7; got[$1] = $3
}
$2 == 1 { klost[$1] = $10; kdup[$1] = $9; kuniq[$1] = $8 }
END {
	printf "bench/peers: %d events of 190 bytes per run, %s, %s CPUs, %s; %s\n\n", n, host, cpus, date, ver
	printf "| side | events/s | CPU s per million (producer + daemon) | producer | daemon | SIGKILL of the daemon mid-run: lost | duplicated |\n"
	printf "| --- | --- | --- | --- | --- | --- | --- |\n"
	split("project syslog-ng", order, " ")
	for (i = 1; i <= 2; i++) {
		s = order[i]
		if (!(s in side)) continue
		pm = pc[s] * 1e6 / n; dm = dc[s] * 1e6 / n
		printf "| %s | %s%s | %.2f | %.2f | %.2f | %s | %s |\n", s, f(eps[s]),
			got[s] < n ? " (only " got[s] " arrived)" : "", pm + dm, pm, dm,
			(s in klost) ? klost[s] : "-", (s in kdup) ? kdup[s] : "-"
	}
	if (("project" in side) && ("syslog-ng" in side)) {
		printf "\nproject / syslog-ng: %.2fx the events/s, %.2fx the CPU per event\n",
			eps["project"] / eps["syslog-ng"],
			(pc["project"] + dc["project"]) / (pc["syslog-ng"] + dc["syslog-ng"])
	}
}' "$tmp/results"
