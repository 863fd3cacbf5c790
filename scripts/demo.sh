#!/usr/bin/env bash
# Sets up and builds (scripts/setup.sh), then runs the main job end to end on
# this machine: a local Master Log receiver (mlog-receiver) on a free
# loopback port, spool-agent draining a spool into it, producers logging
# through the spool (the mlog command, the README's C example program, and
# spool-selftest's check of the queue itself), an outage of the receiver while events pile up in the spool, and
# the replay once it is back.  It checks that every event arrived exactly once
# and prints the figures.  Talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
B=${BUILD_DIR:-build}
WORK=$(mktemp -d /var/tmp/master-log-demo.XXXXXX)
SPOOL=$WORK/spool
KEY=demo-key-$$
RX_PID=""
AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "$RX_PID" ] && kill "$RX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

start_receiver() { # [port]
  rm -f "$WORK/port"
  "$B/tools/receiver/mlog-receiver" --port "${1:-0}" --port-file "$WORK/port" \
    --out "$WORK/received.jsonl" --api-key "$KEY" >"$WORK/receiver.log" 2>&1 &
  RX_PID=$!
  for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
  [ -s "$WORK/port" ] || { echo "demo: the receiver did not start"; cat "$WORK/receiver.log"; exit 1; }
  PORT=$(cat "$WORK/port")
}

received() { [ -f "$WORK/received.jsonl" ] && wc -l <"$WORK/received.jsonl" || echo 0; }

wait_received() { # count
  for _ in $(seq 1 600); do
    [ "$(received)" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "demo: only $(received) of $1 events arrived"; exit 1
}

say "the queue itself: spool, read back, check, acknowledge (each durability mode)"
for mode in sync commit buffered; do
  "$B/tools/spool-selftest" --spool "$WORK/selftest-$mode" --durability "$mode" --events 1000
done

say "receiver and agent"
start_receiver 0
echo "mlog-receiver on 127.0.0.1:$PORT, storing to $WORK/received.jsonl"
MASTER_LOG_API_KEY=$KEY \
  "$B/agent/spool-agent" --spool "$SPOOL" --endpoint "http://127.0.0.1:$PORT" \
  --log-level info 2>"$WORK/agent.log" &
AGENT_PID=$!

say "logging while the link is up: mlog, and the C example program of the README"
seq 1 200 | sed 's/^/telescope status report /' | "$B/tools/mlog" --spool "$SPOOL" -t demo -t online -
"$B/tools/mlog" --spool "$SPOOL" -s warn -t dome -t weather --title "Wind" \
  -m site=demo Dome slit wind threshold approaching
MASTER_LOG_SPOOL_DIR=$SPOOL "$B/tests/client/mlog-example"
wait_received 204
echo "received: $(received) (200 lines from mlog, 1 warning, 3 from the C example program)"

say "outage: the receiver stops; 500 more events pile up in the spool"
kill "$RX_PID"; wait "$RX_PID" 2>/dev/null || true; RX_PID=""
seq 1 500 | sed 's/^/logged during the outage /' | "$B/tools/mlog" --spool "$SPOOL" -t demo -t outage -
sleep 1
"$B/tools/spoolctl" --spool "$SPOOL" status

say "the receiver is back on the same port: the agent replays the backlog in order"
start_receiver "$PORT"
wait_received 704
sleep 1
"$B/tools/spoolctl" --spool "$SPOOL" status

say "check: every event arrived exactly once"
total=$(received)
distinct=$(grep -o '"client_event_id":"[^"]*"' "$WORK/received.jsonl" | sort -u | wc -l)
order=ok
grep -o 'logged during the outage [0-9]*' "$WORK/received.jsonl" | awk '{print $5}' |
  sort -n -c 2>/dev/null || order="OUT OF ORDER"
echo "received $total events, $distinct distinct client_event_ids; outage backlog: $order"
if [ "$total" -ne 704 ] || [ "$distinct" -ne 704 ] || [ "$order" != ok ]; then
  echo "demo: check failed"; exit 1
fi
echo "demo: done; the spool, the receiver's file and the logs are in $WORK"
