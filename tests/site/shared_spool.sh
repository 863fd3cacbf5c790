#!/bin/bash
# One spool for the whole host, with real uids: a spool directory of a group
# (setgid, 2770) stands in for /var/spool/master-log.  Two producers of
# different uids in the group (one with mlog, one through libmlog in commit
# mode, with the umasks 022 and 077) log at the same time as the agent, a
# third uid of the group, drains; each event arrives once, and every file in
# the spool is the group's and group-writable.  A fourth uid outside the
# group is refused with a sentence naming the group, and reads nothing.
# The default spool: the system spool for a member, a private one for the
# others.  Needs root (setpriv); 77 (skipped) otherwise.
set -u
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
	echo "SKIP: needs root and setpriv"
	exit 77
fi
: "${MLOG:?}" "${SPOOL_AGENT:?}" "${MLOG_RECEIVER:?}" "${MLOG_LOGPROG:?}" "${SPOOLCTL:?}"

fail() { echo "FAIL: $*"; exit 1; }

# numeric ids that name nobody on this host
free_id() { # kind start
	local i=$2
	while getent "$1" "$i" >/dev/null; do i=$((i + 1)); done
	echo "$i"
}
P1=$(free_id passwd 64101)
P2=$(free_id passwd $((P1 + 1)))
AG=$(free_id passwd $((P2 + 1)))
OUT=$(free_id passwd $((AG + 1)))
T=$(mktemp -d /tmp/shared-spool.XXXXXX)
chmod 755 "$T"
GNAME=mlt$$
RXPID= AGPID= MADE_GROUP=
cleanup() {
	[ -n "$AGPID" ] && kill "$AGPID" 2>/dev/null && wait "$AGPID" 2>/dev/null
	[ -n "$RXPID" ] && kill "$RXPID" 2>/dev/null && wait "$RXPID" 2>/dev/null
	[ -n "$MADE_GROUP" ] && groupdel "$GNAME" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
# a named group, so the refusal can be checked to name it (numeric if
# groupadd is missing)
G=$(free_id group 64100)
if command -v groupadd >/dev/null && groupadd -g "$G" "$GNAME" 2>/dev/null; then
	MADE_GROUP=1
else
	GNAME=$G
fi

SP=$T/spool
mkdir "$SP" && chown 0:"$G" "$SP" && chmod 2770 "$SP" || fail "cannot make $SP"
for u in $P1 $P2 $OUT; do mkdir "$T/home-$u" && chown "$u:$u" "$T/home-$u"; done

as_member() { # uid umask cmd...
	local u=$1 m=$2
	shift 2
	setpriv --reuid="$u" --regid="$u" --groups="$G" --inh-caps=-all \
		env -i PATH=/usr/bin:/bin HOME="$T/home-$u" MASTER_LOG_SPOOL_DIR="$SP" \
		MASTER_LOG_SPAWN_AGENT=false MASTER_LOG_DURABILITY=commit \
		bash -c 'umask '"$m"'; exec "$@"' run "$@"
}

"$MLOG_RECEIVER" --listen 127.0.0.1 --port 0 --port-file "$T/port" --out "$T/out.jsonl" \
	>/dev/null 2>"$T/rx.log" &
RXPID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
PORT=$(cut -d' ' -f1 "$T/port")
[ -n "$PORT" ] || fail "receiver did not start"
cat >"$T/agent.yaml" <<CONF
spool: $SP
http:
  endpoint: http://127.0.0.1:$PORT
flush_interval_seconds: 0.2
retry:
  initial_seconds: 0.05
  max_seconds: 0.2
CONF
chmod 644 "$T/agent.yaml"

# P2 (umask 077) makes the spool's files: without the library's care they
# would be 0600, and nobody else of the group could open them
as_member "$P2" 077 "$MLOG" "first from $P2" || fail "first mlog of uid $P2"

N=300
setpriv --reuid="$AG" --regid="$G" --clear-groups --inh-caps=-all \
	bash -c 'umask 077; exec "$@"' run "$SPOOL_AGENT" -c "$T/agent.yaml" 2>"$T/agent.log" &
AGPID=$!
seq 0 $((N - 1)) | sed "s/^/p1 /" | as_member "$P1" 022 "$MLOG" - &
M1=$!
as_member "$P2" 077 "$MLOG_LOGPROG" "$N" "p2" 10 >"$T/p2.out" &
M2=$!
wait "$M1" || fail "mlog of uid $P1 failed"
wait "$M2" || fail "libmlog program of uid $P2 failed: $(cat "$T/p2.out")"
grep -q "^log failed" "$T/p2.out" && fail "uid $P2: $(cat "$T/p2.out")"

count_out() { grep -c '"message":"'"$1"'"' "$T/out.jsonl" 2>/dev/null; }
want=$((2 * N + 1))
for _ in $(seq 300); do
	got=$(wc -l <"$T/out.jsonl" 2>/dev/null || echo 0)
	[ "$got" -ge "$want" ] && break
	sleep 0.1
done
[ "$got" -eq "$want" ] || fail "the receiver has $got events, expected $want; agent log: $(tail -5 "$T/agent.log")"
for i in $(seq 0 $((N - 1))); do
	[ "$(count_out "p1 $i")" = 1 ] || fail "event 'p1 $i' arrived $(count_out "p1 $i") times"
	[ "$(count_out "p2 $i")" = 1 ] || fail "event 'p2 $i' arrived $(count_out "p2 $i") times"
done
[ "$(count_out "first from $P2")" = 1 ] || fail "the first event did not arrive once"
grep -q "writable by" "$T/agent.log" && fail "agent warned about the shared spool: $(grep "writable by" "$T/agent.log")"

# every file and directory the library made: the group's, group-writable,
# nothing for others
nfiles=0
while read -r g mode path; do
	nfiles=$((nfiles + 1))
	[ "$g" = "$G" ] || fail "$path has group $g, not $G"
	m=$((8#$mode))
	[ $((m & 8#060)) = $((8#060)) ] || fail "$path has mode $mode: not group-writable"
	[ $((m & 8#007)) = 0 ] || fail "$path has mode $mode: others have rights"
done < <(find "$SP" -mindepth 1 -printf '%G %m %p\n')
[ "$nfiles" -ge 6 ] || fail "only $nfiles files in the spool"
[ -p "$SP/wake" ] || fail "no wake FIFO"

# the outsider: refused, naming the group; reads nothing
as_out() {
	setpriv --reuid="$OUT" --regid="$OUT" --clear-groups --inh-caps=-all \
		env -i PATH=/usr/bin:/bin HOME="$T/home-$OUT" "$@"
}
if as_out MASTER_LOG_SPOOL_DIR="$SP" "$MLOG" "outsider secret" 2>"$T/out.err"; then
	fail "uid $OUT outside the group could log into the shared spool"
fi
grep -q "group '$GNAME'" "$T/out.err" || fail "the refusal does not name group '$GNAME': $(cat "$T/out.err")"
grep -q "usermod -a -G $GNAME" "$T/out.err" || fail "the refusal does not say how to join: $(cat "$T/out.err")"
as_out ls "$SP" >/dev/null 2>&1 && fail "uid $OUT can list the spool"
as_out cat "$SP/data.mdb" >/dev/null 2>&1 && fail "uid $OUT can read data.mdb"
as_out "$SPOOLCTL" --spool "$SP" status >/dev/null 2>&1 && fail "uid $OUT can read the spool's status"
as_out "$SPOOLCTL" --spool "$SP" peek >/dev/null 2>&1 && fail "uid $OUT can peek"

# the default spool: the system one for a member, a private one otherwise
as_member "$P1" 022 env -u MASTER_LOG_SPOOL_DIR MASTER_LOG_SYSTEM_SPOOL_DIR="$SP" \
	"$MLOG" "default from $P1" || fail "mlog of a member with the default spool"
as_out MASTER_LOG_SYSTEM_SPOOL_DIR="$SP" "$MLOG" "outsider private" 2>"$T/out2.err" ||
	fail "uid $OUT could not log to its own spool: $(cat "$T/out2.err")"
[ -d "$T/home-$OUT/.local/state/master-log/spool" ] || fail "no private spool for uid $OUT"
for _ in $(seq 100); do [ "$(count_out "default from $P1")" = 1 ] && break; sleep 0.1; done
[ "$(count_out "default from $P1")" = 1 ] || fail "the member's event did not go to the system spool"
kill "$AGPID"
wait "$AGPID"
AGPID=
grep -q "outsider" "$T/out.jsonl" && fail "an outsider's event reached the shared spool"
# a lock.mdb removed while nobody had the spool open (by hand, a cleanup)
# comes back group-writable, whoever opens first and whatever the umask
rm -f "$SP/lock.mdb"
as_member "$P1" 077 "$MLOG" "after the lock file went" || fail "mlog after lock.mdb was removed"
m=$(stat -c '%a %g' "$SP/lock.mdb")
[ "$m" = "660 $G" ] || fail "lock.mdb made again as $m, not 660 $G"
as_member "$P2" 022 "$MLOG" "the other member after" || fail "uid $P2 cannot log after uid $P1 made lock.mdb"
st=$("$SPOOLCTL" --spool "$SP" status --json) || fail "spoolctl status"
echo "$st" | grep -q '"pending": *2[,}]' || fail "not the 2 events logged after the agent stopped: $st"
echo "ok: $((2 * N + 2)) events from uids $P1 and $P2 drained by uid $AG; $nfiles files checked; uid $OUT refused"
