#!/usr/bin/env bash
# link-bench.sh — spool-agent replaying a backlog over a remote link (issue
# 12), in a network namespace of its own (unshare --net --map-root-user, as
# `unshare -rn`), every figure beside the limit measured in the same run:
#
#  latency   mlog-receiver --latency-ms 600 (a geostationary round trip) and
#            a backlog of 5,000 events, at the default configuration
#            (max_in_flight 4, batches growing to max_batch_size 1000) and at
#            the old one (max_in_flight 1, batch_size 100).  Events/s against
#            the ideal max_in_flight × batch / RTT, the RTT measured with
#            curl against the same receiver, and against the best a backlog
#            of this size allows (⌈backlog / (max_in_flight × batch)⌉ round
#            trips).
#  tbf       lo (MTU 1500) through `tc tbf rate 1mbit`: gzip off and on,
#            max_in_flight 1 and the default 4, and bandwidth_limit 62500.
#            Events/s, wire bytes per event (the receiver's request_bytes:
#            request line, headers and body as sent), the agent's request
#            bytes/s, and the link's use: what tbf sent (`tc -s qdisc`, both
#            directions, headers included) per second against 125,000.
#
# link-bench.sh [--json] [--quick] [--receiver PATH] [--agent PATH]
#               [--filler PATH] [--dir DIR]
# Defaults: $MLOG_RECEIVER, $SPOOL_AGENT, $AGENT_BENCH (agent-bench, whose
# --fill-only makes the spools: ~400-byte events), /var/tmp.  About 3
# minutes (--quick: about 1).  Exit 77 (skipped) when the namespace or tc
# is not allowed here, 1 when a case fails.  Needs curl, ip and tc
# (iproute2), unshare (util-linux).
set -euo pipefail

JSON=0
QUICK=0
RX=${MLOG_RECEIVER:-}
AGENT=${SPOOL_AGENT:-}
FILLER=${AGENT_BENCH:-}
BASE=/var/tmp
ARGS=("$@")

usage() {
	echo "usage: link-bench.sh [--json] [--quick] [--receiver PATH] [--agent PATH] [--filler PATH] [--dir DIR]"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--json) JSON=1 ;;
	--quick) QUICK=1 ;;
	--receiver) RX=$2; shift ;;
	--agent) AGENT=$2; shift ;;
	--filler) FILLER=$2; shift ;;
	--dir) BASE=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

skip() {
	echo "link-bench: skipped: $*" >&2
	exit 77
}
die() {
	echo "link-bench: $*" >&2
	exit 1
}

[ -n "$RX" ] && [ -n "$AGENT" ] && [ -n "$FILLER" ] ||
	die "need --receiver, --agent and --filler (or MLOG_RECEIVER, SPOOL_AGENT, AGENT_BENCH)"
for p in "$RX" "$AGENT" "$FILLER"; do
	[ -x "$p" ] || die "$p: not an executable"
done
command -v curl >/dev/null || die "no curl"
export PATH="$PATH:/usr/sbin:/sbin"

# ---- into a network namespace of our own ----
if [ -z "${LINK_BENCH_IN_NETNS:-}" ]; then
	command -v unshare >/dev/null || skip "no unshare command (util-linux)"
	if ! why=$(unshare --net --map-root-user true 2>&1); then
		skip "unshare --net --map-root-user: ${why:-refused} (user namespaces not allowed here?)"
	fi
	LINK_BENCH_IN_NETNS=1 exec unshare --net --map-root-user "$BASH" "$0" "${ARGS[@]}"
fi
command -v ip >/dev/null && command -v tc >/dev/null || skip "no ip or tc command (iproute2)"
# tc tbf drops every packet larger than its burst; lo would send 64 KiB ones
why=$(ip link set lo up mtu 1500 2>&1) || skip "ip link set lo up mtu 1500: $why"

RX=$(realpath "$RX")
AGENT=$(realpath "$AGENT")
FILLER=$(realpath "$FILLER")
WORK=$(mktemp -d "$BASE/link-bench-XXXXXX")
RX_PID=
AGENT_PID=
cleanup() {
	[ -z "$AGENT_PID" ] || kill -9 "$AGENT_PID" 2>/dev/null || true
	[ -z "$RX_PID" ] || kill "$RX_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
# calc EXPR: awk arithmetic, printed with %.6g unless a format is given
calc() { awk "BEGIN { printf \"${2:-%.6g}\", $1 }"; }
note() { [ "$JSON" = 1 ] || echo "$*" >&2; }

start_rx() {
	rm -f "$WORK/port"
	"$RX" --port 0 --port-file "$WORK/port" "$@" >/dev/null 2>>"$WORK/receiver.log" &
	RX_PID=$!
	for _ in $(seq 200); do
		[ -s "$WORK/port" ] && break
		sleep 0.05
	done
	[ -s "$WORK/port" ] || die "mlog-receiver did not start: $(cat "$WORK/receiver.log")"
	URL="http://127.0.0.1:$(awk '{print $1; exit}' "$WORK/port")"
}
stop_rx() {
	kill "$RX_PID"
	wait "$RX_PID" || true
	RX_PID=
}
stats() { curl -s --max-time 30 "$URL/stats"; }
# field JSON NAME: a number at the top of /stats's flat object
field() { printf '%s' "$1" | grep -o "\"$2\":[0-9.]*" | head -n 1 | cut -d: -f2; }

# fill DIR N: a spool of N events of about 400 bytes of JSON each
fill() { "$FILLER" --events "$2" --fill-only "$1" >/dev/null || die "filling $1 failed"; }

# config FILE SPOOL GZIP [TOP-LEVEL LINE...]: GZIP true, false or "" (default)
config() {
	local file=$1 spool=$2 gzip=$3
	shift 3
	{
		echo "spool: $spool"
		echo "log:"
		echo "  level: warning"
		echo "http:"
		echo "  endpoint: $URL"
		[ -z "$gzip" ] || echo "  gzip: $gzip"
		echo "  timeouts:"
		echo "    request_seconds: 120"
		for line in "$@"; do echo "$line"; done
	} >"$file"
}

# shortest of three single POSTs: the round trip of one request
measure_rtt() {
	local best=1000 t i
	for i in 1 2 3; do
		t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
			-d "{\"message\":\"rtt\",\"client_event_id\":\"01ARZ3NDEKTSV4RRFFQ69G5FA$i\",\"timestamp\":\"2026-01-01T00:00:00Z\"}" \
			"$URL/api/v1/logs")
		best=$(calc "($t < $best) ? $t : $best")
	done
	echo "$best"
}

ROWS_LAT=()
ROWS_TBF=()
JSON_CASES=()

# ---- latency ----
# latency_case NAME MAX_IN_FLIGHT BATCH [CONFIG LINE...]
latency_case() {
	local name=$1 mif=$2 batch=$3
	shift 3
	local n=$LAT_EVENTS spool="$WORK/spool-lat" cfg="$WORK/agent.yaml"
	start_rx --latency-ms 600
	local rtt
	rtt=$(measure_rtt)
	local s0
	s0=$(stats)
	fill "$spool" "$n"
	config "$cfg" "$spool" "" "$@"
	note "latency, $name: draining $n events ..."
	local t0 t1 rc=0
	t0=$(now)
	"$AGENT" -c "$cfg" --once 2>>"$WORK/agent.log" || rc=$?
	t1=$(now)
	local s1
	s1=$(stats)
	stop_rx
	rm -rf "$spool"
	[ "$rc" = 0 ] || die "latency, $name: spool-agent --once exited $rc: $(tail -n 5 "$WORK/agent.log")"
	local acc reqs most secs rate ideal rounds bound
	acc=$(calc "$(field "$s1" accepted) - $(field "$s0" accepted)" "%d")
	[ "$acc" = "$n" ] || die "latency, $name: the receiver stored $acc of $n events"
	reqs=$(calc "$(field "$s1" requests) - $(field "$s0" requests)" "%d")
	most=$(field "$s1" requests_open_most)
	secs=$(calc "$t1 - $t0" "%.3f")
	rate=$(calc "$n / $secs" "%.0f")
	ideal=$(calc "$mif * $batch / $rtt" "%.0f")
	rounds=$(calc "int(($n + $mif * $batch - 1) / ($mif * $batch))" "%d")
	bound=$(calc "$n / ($rounds * $rtt)" "%.0f")
	ROWS_LAT+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$name" "$n" "$secs" \
		"$rate" "$reqs" "$most" "$(calc "$rtt * 1000" "%.0f")" "$ideal" "$(calc "$rate / $ideal" "%.2f")" \
		"$(calc "$rate / $bound" "%.2f")")")
	JSON_CASES+=("{\"case\":\"latency $name\",\"events\":$n,\"seconds\":$secs,\"events_per_sec\":$rate,\"requests\":$reqs,\"requests_open_most\":$most,\"rtt_ms\":$(calc "$rtt * 1000" "%.1f"),\"max_in_flight\":$mif,\"batch\":$batch,\"ideal_events_per_sec\":$ideal,\"ratio_to_ideal\":$(calc "$rate / $ideal" "%.3f"),\"bound_for_backlog\":$bound,\"ratio_to_bound\":$(calc "$rate / $bound" "%.3f")}")
}

# ---- 1 Mbit/s ----
LINK=125000
# tbf_case NAME GZIP MAX_IN_FLIGHT BACKLOG CAP [SPAN]
# Drains BACKLOG with --once: events/s and wire bytes per event over the
# whole drain (the receiver counts events when a request completes, and a
# request of 1000 plain events takes seconds here).  The rates of bytes,
# which the receiver and tbf count as they pass, over a window from WARM to
# WARM+SPAN seconds, while the drain is still under way.  The bucket of
# bandwidth_limit lets whole requests go (360 KB each here, 6 s at the
# cap), so the cap case takes a longer window.
tbf_case() {
	local name=$1 gzip=$2 mif=$3 n=$4 cap=$5 span=${6:-$SPAN}
	local spool="$WORK/spool-tbf" cfg="$WORK/agent.yaml" lines=("max_in_flight: $mif")
	[ "$cap" = 0 ] || lines+=("bandwidth_limit: $cap")
	start_rx
	fill "$spool" "$n"
	config "$cfg" "$spool" "$gzip" "${lines[@]}"
	note "1 Mbit/s, $name: draining $n events, window ${WARM}-$((WARM + span)) s ..."
	local t0 a q0 w0 b q1 w1 t1 rc=0
	t0=$(now)
	"$AGENT" -c "$cfg" --once 2>>"$WORK/agent.log" &
	AGENT_PID=$!
	sleep "$WARM"
	a=$(stats)
	q0=$(tc -s qdisc show dev lo | awk '/Sent/ {print $2; exit}')
	w0=$(now)
	sleep "$span"
	b=$(stats)
	q1=$(tc -s qdisc show dev lo | awk '/Sent/ {print $2; exit}')
	w1=$(now)
	kill -0 "$AGENT_PID" 2>/dev/null ||
		die "1 Mbit/s, $name: the backlog of $n was gone before the window closed; make it larger"
	wait "$AGENT_PID" || rc=$?
	t1=$(now)
	AGENT_PID=
	local c
	c=$(stats)
	stop_rx
	rm -rf "$spool"
	[ "$rc" = 0 ] || die "1 Mbit/s, $name: spool-agent --once exited $rc: $(tail -n 5 "$WORK/agent.log")"
	[ "$(field "$c" accepted)" = "$n" ] || die "1 Mbit/s, $name: the receiver stored $(field "$c" accepted) of $n"
	local secs rate bpe wsecs reqrate link use
	secs=$(calc "$t1 - $t0" "%.2f")
	rate=$(calc "$n / $secs" "%.0f")
	bpe=$(calc "$(field "$c" request_bytes) / $n" "%.0f")
	wsecs=$(calc "($(field "$b" uptime_ms) - $(field "$a" uptime_ms)) / 1000")
	reqrate=$(calc "($(field "$b" request_bytes) - $(field "$a" request_bytes)) / $wsecs" "%.0f")
	link=$(calc "($q1 - $q0) / ($w1 - $w0)" "%.0f")
	use=$(calc "$link / $LINK" "%.3f")
	local capcol="" capjson=""
	if [ "$cap" != 0 ]; then
		capcol="$(calc "$reqrate / $cap" "%.3f")"
		capjson=",\"bandwidth_limit\":$cap,\"ratio_to_cap\":$(calc "$reqrate / $cap" "%.4f")"
	fi
	ROWS_TBF+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$name" "$n" "$secs" "$rate" "$bpe" \
		"$reqrate" "$link" "$(calc "$use * 100" "%.1f")%" "$capcol")")
	JSON_CASES+=("{\"case\":\"1mbit $name\",\"gzip\":${gzip:-null},\"max_in_flight\":$mif,\"events\":$n,\"seconds\":$secs,\"events_per_sec\":$rate,\"wire_bytes_per_event\":$bpe,\"window_seconds\":$wsecs,\"request_bytes_per_sec\":$reqrate,\"link_bytes_per_sec\":$link,\"link_limit\":$LINK,\"link_use\":$use$capjson}")
}

if [ "$QUICK" = 1 ]; then
	LAT_EVENTS=1000 WARM=2 SPAN=4 SCALE=0.4
else
	LAT_EVENTS=5000 WARM=3 SPAN=12 SCALE=1
fi

latency_case "default (max_in_flight 4, batches up to 1000)" 4 1000
latency_case "old default (max_in_flight 1, batch_size 100)" 1 100 \
	"max_in_flight: 1" "batch_size: 100" "max_batch_size: 100"

why=$(tc qdisc replace dev lo root tbf rate 1mbit burst 32kbit latency 400ms 2>&1) ||
	skip "tc qdisc replace dev lo root tbf rate 1mbit burst 32kbit latency 400ms: $why"
# backlogs that take about 25 s (quick: 10 s), longer than WARM+SPAN.
# agent-bench's events are about 360 wire bytes plain, about 12 with gzip
# (they differ only in their numbers); the answers' ids (about 25 bytes per
# event) share the link.  The cap is tried with gzip off: with gzip on the
# answers fill the link before the requests reach 62,500 bytes/s.
PLAIN=$(calc "int(7000 * $SCALE)" "%d")
GZIP=$(calc "int(80000 * $SCALE)" "%d")
CAPPED=$(calc "int(7500 * $SCALE)" "%d")
tbf_case "gzip off, max_in_flight 1" false 1 "$PLAIN" 0
tbf_case "gzip off, max_in_flight 4" false 4 "$PLAIN" 0
tbf_case "gzip on, max_in_flight 1" true 1 "$GZIP" 0
tbf_case "gzip on, max_in_flight 4" true 4 "$GZIP" 0
tbf_case "gzip off, max_in_flight 4, bandwidth_limit 62500" false 4 "$CAPPED" 62500 $((2 * SPAN))
tc qdisc del dev lo root 2>/dev/null || true

if [ "$JSON" = 1 ]; then
	printf '{"bench":"link","quick":%s,"cases":[' "$([ "$QUICK" = 1 ] && echo true || echo false)"
	sep=""
	for c in "${JSON_CASES[@]}"; do
		printf '%s%s' "$sep" "$c"
		sep=","
	done
	printf ']}\n'
else
	echo
	echo "Receiver answering after 600 ms (latency):"
	echo
	echo "| case | backlog | seconds | events/s | requests | most open | RTT ms | ideal events/s (max_in_flight × batch / RTT) | ratio | ratio to the best for this backlog |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	printf '%s\n' "${ROWS_LAT[@]}"
	echo
	echo "1 Mbit/s tc tbf link (125,000 bytes/s, both directions share it):"
	echo
	echo "| case | backlog | seconds | events/s | wire bytes per event | request bytes/s | link bytes/s | link use (of 125,000) | request bytes/s ÷ cap |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	printf '%s\n' "${ROWS_TBF[@]}"
fi
