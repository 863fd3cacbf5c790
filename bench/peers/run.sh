#!/usr/bin/env bash
# bench/peers/run.sh — the same workload through this project and through
# syslog-ng, into the same receiver, in one run; prints them side by side.
#
#   bench/peers/run.sh [BUILD_DIR]      (default: build-rel, then build)
#   EVENTS=N   events per run (default 300000), 190-byte messages
#   RUNS=N     rounds of the three plain runs (default 3): the table shows
#              the median and the range of the rounds
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
# Each round begins with the sink alone: `peer-producer post` sends the
# project's own events (a batch of 1000 taken from its first run, as they
# arrived) to a fresh receiver, 4 requests in flight, N events in all: the
# receiver's ceiling for this workload, the limit each side is shown
# beside.  Per side: events/s from the producer's start until the
# receiver stored the last of the N (by the receiver's clock:
# last_accepted_ms in /stats; every one of the N counted in its out file,
# kept in /dev/shm when there is one); CPU seconds per million events of the producer and the daemon
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
RUNS=${RUNS:-3}
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
# The sink's copy of what it received (read back to count every event) is
# the instrument, not the system measured: kept in memory when /dev/shm
# allows, so its writes do not compete for the disk with the daemons'
# synced commits (each run's copy, ~140 MB, is removed after the run).
sinkdir=$tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	sinkdir=$(mktemp -d /dev/shm/peers-sink.XXXXXX)
fi
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
	[ "$sinkdir" = "$tmp" ] || rm -rf "$sinkdir"
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
	local out=$sinkdir/$1.jsonl port=$tmp/$1.port
	rm -f "$out" "$port" # a port file left by an earlier run names a closed port
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
	elif [ "$side" = syslog-ng ]; then
		syslog_start "$d" "$d/daemon.time"
	fi
	local t0 t1 prod
	t0=$(now)
	if [ "$side" = limit ]; then
		/usr/bin/time -f "%U %S" -o "$d/producer.time" \
			"$producer" post "http://127.0.0.1:$rx_port/limit" "$tmp/limit.body" "$EVENTS" \
			2>"$d/producer.err" &
	elif [ "$side" = project ]; then
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
	# the moment the last event arrived, by the sink's own clock: polling
	# late does not count against either side
	local st up last
	st=$(curl -s "http://127.0.0.1:$rx_port/stats")
	t1=$(now)
	up=$(echo "$st" | grep -o '"uptime_ms":[0-9]*' | cut -d: -f2)
	last=$(echo "$st" | grep -o '"last_accepted_ms":-\?[0-9]*' | cut -d: -f2)
	if [ -n "$up" ] && [ -n "$last" ] && [ "$last" -ge 0 ]; then
		t1=$(awk -v t="$t1" -v u="$up" -v l="$last" 'BEGIN{printf "%.3f", t - (u - l) / 1000}')
	fi
	wait "$prod" || echo "run.sh: $name: the producer failed: $(cat "$d/producer.err")" >&2
	[ "$side" = limit ] || daemon_stop
	rx_stop
	# the sink's ceiling replays a batch of the project's own events
	if [ "$side" = project ] && [ ! -s "$tmp/limit.body" ]; then
		head -n 1000 "$rx_out" | awk 'BEGIN {printf "{\"logs\":["} NR > 1 {printf ",\n"}
			{printf "%s", $0} END {printf "\n]}"}' >"$tmp/limit.body"
	fi
	local pc dc=0
	pc=$(cpu_of "$d/producer.time")
	[ -f "$d/daemon.time" ] && dc=$(cpu_of "$d/daemon.time")
	[ -f "$d/daemon2.time" ] && dc=$(awk -v a="$dc" -v b="$(cpu_of "$d/daemon2.time")" 'BEGIN{print a + b}')
	local uniq=$got dups=0 lost=0
	[ "$side" = limit ] || read -r uniq dups lost < <(tally "$rx_out")
	echo "$side $kill $got $t0 $t1 $pc $dc $uniq $dups $lost" >>"$tmp/results"
	echo "run.sh: $side: $got events counted, $uniq distinct, $dups duplicated, $lost lost;" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}') s; CPU s producer $pc, daemon $dc" >&2
	if [ "$uniq" -lt "$EVENTS" ] && [ "$kill" = 0 ]; then
		echo "run.sh: $name: events missing; the logs say:" >&2
		tail -n 5 "$tmp/agent.err" "$tmp/syslog-ng.err" "$tmp/$name.rx.err" "$d/producer.err" 2>/dev/null >&2 || true
	fi
	rm -rf "$spool" "$d" "$rx_out"
}

echo "run.sh: $EVENTS events per run; $syslog_ng_version; temp $tmp" >&2
# the sink's ceiling needs a batch of the project's events: a first,
# small project run provides it
EVENTS_ALL=$EVENTS
EVENTS=1000 run project 0 2>/dev/null
: >"$tmp/results"
EVENTS=$EVENTS_ALL
for r in $(seq "$RUNS"); do
	for side in limit project syslog-ng; do
		echo "run.sh: round $r: $side ..." >&2
		run "$side" 0
	done
done
if [ "$KILL" = 1 ]; then
	for side in project syslog-ng; do
		echo "run.sh: $side, daemon killed with SIGKILL mid-run ..." >&2
		run "$side" 1
	done
fi

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
awk -v n="$EVENTS" -v host="$(hostname)" -v cpus="$(nproc)" -v ver="$syslog_ng_version" \
	-v model="$cpu_model" -v date="$(date -u +%Y-%m-%dT%H:%MZ)" '
function med(s, key,   k, m, i, j, t, v) {
	m = cnt[s]
	for (i = 1; i <= m; i++) v[i] = val[s, key, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	lo[s, key] = v[1]; hi[s, key] = v[m]
	return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
$2 == 0 {
	s = $1; k = ++cnt[s]
	val[s, "eps", k] = $3 / ($5 - $4)
	val[s, "pc", k] = $6 * 1e6 / n; val[s, "dc", k] = $7 * 1e6 / n
	val[s, "cpu", k] = ($6 + $7) * 1e6 / n
	if ($8 < n) short[s] = short[s] " " $8
	if ($9 > 0) dup[s] = dup[s] " " $9
}
$2 == 1 { klost[$1] = $10; kdup[$1] = $9 }
END {
	printf "bench/peers: %d events of 190 bytes per run, %d rounds, %s, %s CPUs (%s), %s; %s\n\n", n,
		cnt["project"], host, cpus, model, date, ver
	printf "| side | events/s, median (range) | CPU s per million, producer + daemon | producer | daemon | SIGKILL of the daemon mid-run: lost | duplicated |\n"
	printf "| --- | --- | --- | --- | --- | --- | --- |\n"
	split("limit project syslog-ng", order, " ")
	for (i = 1; i <= 3; i++) {
		s = order[i]
		if (!(s in cnt)) continue
		e[s] = med(s, "eps"); c[s] = med(s, "cpu"); p = med(s, "pc"); d = med(s, "dc")
		note = (s in short) ? " (only" short[s] " arrived)" : ""
		if (s in dup) note = note " (duplicated:" dup[s] ")"
		if (s == "limit")
			printf "| sink alone (mlog-receiver --any-json, fed the project'"'"'s events by a trivial sender) | %.0f (%.0f–%.0f)%s | - | - | - | - | - |\n",
				e[s], lo[s, "eps"], hi[s, "eps"], note
		else
			printf "| %s | %.0f (%.0f–%.0f)%s | %.2f (%.2f–%.2f) | %.2f | %.2f | %s | %s |\n", s,
				e[s], lo[s, "eps"], hi[s, "eps"], note, c[s], lo[s, "cpu"], hi[s, "cpu"], p, d,
				(s in klost) ? klost[s] : "-", (s in kdup) ? kdup[s] : "-"
	}
	if (("project" in cnt) && ("syslog-ng" in cnt))
		printf "\nproject / syslog-ng: %.2fx the events/s, %.2fx the CPU per event (medians)\n",
			e["project"] / e["syslog-ng"], c["project"] / c["syslog-ng"]
	if (("project" in cnt) && ("limit" in cnt))
		printf "project / sink alone: %.2f of the sink'"'"'s ceiling (medians)\n", e["project"] / e["limit"]
}' "$tmp/results"
