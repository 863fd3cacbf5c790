#!/usr/bin/env bash
# The Debian packages, end to end, on this machine (issue 15).  Run as root
# on a Debian 12 machine that may be changed and put back (CI, .ci/run):
#  1. builds the packages from a copy of this tree (DEB_BUILD_OPTIONS=nocheck:
#     the suites ran already) and runs lintian on them (no error allowed);
#  2. installs them with `apt-get install ./*.deb`, and checks what they set
#     up: the user and group master-log, the spool /var/spool/master-log
#     (2770, group master-log), the unit (not enabled, systemd-analyze
#     verify clean), /etc/master-log/spool-agent.yaml passing --check-config
#     as the agent's user, the -dev package (a program built with pkg-config),
#     master-log-spool-nats (mlog-relay runs, nats.so where the agent looks
#     and loaded by it);
#  3. runs the main job from the installed files: mlog-receiver on
#     127.0.0.1, spool-agent as user master-log, mlog as producers, and
#     checks every event arrived; then leaves undelivered events behind;
#  4. removes, then purges the packages, and checks the spool survived both
#     with its undelivered events.
# Everything it adds is taken away at the end, on failure too: the packages
# (and any package their installation pulled in), the users and groups it
# made, the spool if there was none, its temporary files, its processes.
# Exit 0 passed, 1 failed, 77 skipped (not root, no dpkg-buildpackage, or
# master-log-spool already installed here).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SPOOL=/var/spool/master-log
CONF=/etc/master-log/spool-agent.yaml
PACKAGES=(libspool0 libmlog0 libmaster-log-spool-dev master-log-spool master-log-spool-nats)
USER_A=mlogpkgtest-a
USER_B=mlogpkgtest-b
USER_OUT=mlogpkgtest-out
API_KEY=package-test-key-0123

say() { printf 'package-test: %s\n' "$*"; }
fail() {
	printf 'package-test: FAIL: %s\n' "$*" >&2
	exit 1
}
skip() {
	printf 'package-test: SKIP: %s\n' "$*"
	exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (it installs packages and makes users)"
for tool in dpkg-buildpackage dpkg-architecture apt-get lintian setpriv runuser curl; do
	command -v "$tool" >/dev/null 2>&1 || skip "no $tool"
done
for p in "${PACKAGES[@]}"; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		skip "$p is installed already: this test installs and removes it"
	fi
done

# ---- what to put back ----
TMP=$(mktemp -d /tmp/mlog-package-test.XXXXXX)
chmod 755 "$TMP"
dpkg-query -W -f='${Package}\n' | sort >"$TMP/packages-before"
had_user=no
getent passwd master-log >/dev/null && had_user=yes
had_group=no
getent group master-log >/dev/null && had_group=yes
had_spool=no
[ -e "$SPOOL" ] && had_spool=yes
made_users=()
pids=()

cleanup() {
	local rc=$?
	set +e
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	# our packages, then whatever their installation pulled in
	local ours=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok \(installed\|config-files\|unpacked\|half\)" &&
			ours+=("$p")
	done
	[ ${#ours[@]} -gt 0 ] && dpkg --purge "${ours[@]}" >/dev/null 2>&1
	dpkg-query -W -f='${Package}\n' | sort >"$TMP/packages-after"
	mapfile -t extra < <(comm -13 "$TMP/packages-before" "$TMP/packages-after")
	if [ ${#extra[@]} -gt 0 ]; then
		say "removing the packages the installation pulled in: ${extra[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${extra[@]}" >/dev/null 2>&1
	fi
	for u in "${made_users[@]}"; do
		userdel "$u" 2>/dev/null
		getent group "$u" >/dev/null && groupdel "$u" 2>/dev/null
	done
	[ "$had_user" = no ] && getent passwd master-log >/dev/null && userdel master-log
	[ "$had_group" = no ] && getent group master-log >/dev/null && groupdel master-log
	[ "$had_spool" = no ] && rm -rf "$SPOOL"
	[ -d /etc/master-log ] && rmdir /etc/master-log 2>/dev/null
	rm -rf "$TMP"
	if [ "$rc" -eq 0 ]; then say "passed"; else say "cleaned up after the failure"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_for() { # seconds, description, command...
	local t=$1 what=$2
	shift 2
	for _ in $(seq $((t * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	fail "gave up after ${t}s waiting for $what"
}

# ---- 1. build and lintian ----
say "building the packages in $TMP/src"
mkdir "$TMP/src"
if [ -d "$SRC/.git" ] || [ -f "$SRC/.git" ]; then
	git -C "$SRC" ls-files -co --exclude-standard -z | (cd "$SRC" && tar --null -cf - -T -) |
		tar -xf - -C "$TMP/src"
else
	tar -C "$SRC" --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$TMP/src"
fi
start=$(date +%s)
if ! (cd "$TMP/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -us -uc -Pnocheck \
	>"$TMP/build.log" 2>&1); then
	tail -n 40 "$TMP/build.log"
	fail "dpkg-buildpackage failed (above: the end of its log)"
fi
say "built in $(($(date +%s) - start)) s: $(cd "$TMP" && echo *.deb)"
# lintian leaves its own temporary files (mldbm-elf-*) behind: keep them
# in the test's folder, which goes at the end
mkdir "$TMP/lintian-tmp"
TMPDIR="$TMP/lintian-tmp" lintian --tag-display-limit 0 "$TMP"/master-log-spool_*.changes >"$TMP/lintian.log" 2>&1 || true
grep -v '^running with root privileges' "$TMP/lintian.log" | sed 's/^/  lintian: /' || true
if grep -q '^E: ' "$TMP/lintian.log"; then
	fail "lintian reports errors"
fi

# ---- 2. install, and what the packages set up ----
debs=()
for p in "${PACKAGES[@]}"; do debs+=("$(echo "$TMP/${p}"_*.deb)"); done
say "apt-get install ${debs[*]##*/}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >"$TMP/install.log" 2>&1 ||
	{ cat "$TMP/install.log"; fail "apt-get install failed"; }

getent passwd master-log >/dev/null || fail "no user master-log after installation"
getent group master-log >/dev/null || fail "no group master-log after installation"
uid=$(id -u master-log)
[ "$uid" -lt 1000 ] || fail "master-log is not a system user (uid $uid)"
[ -d "$SPOOL" ] || fail "no $SPOOL after installation"
mode=$(stat -c '%a %G' "$SPOOL")
[ "$mode" = "2770 master-log" ] || fail "$SPOOL: mode and group '$mode', expected '2770 master-log'"
unit=$(dpkg -L master-log-spool | grep '/systemd/system/spool-agent.service$') ||
	fail "no spool-agent.service in master-log-spool"
[ ! -e /etc/systemd/system/multi-user.target.wants/spool-agent.service ] ||
	fail "the package enabled spool-agent.service"
! pgrep -u master-log -x spool-agent >/dev/null || fail "the package started spool-agent"
grep -q "^ExecStart=/usr/bin/spool-agent -c $CONF\$" "$unit" || fail "$unit: ExecStart is not the installed agent"
if command -v systemd-analyze >/dev/null 2>&1; then
	man=--man=no # the man pages come with their own branch: checked once they are there
	[ -e /usr/share/man/man8/spool-agent.8.gz ] && man=--man=yes
	out=$(systemd-analyze verify "$man" "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
	say "systemd-analyze verify $man $unit: clean"
fi
out=$(runuser -u master-log -- env -i PATH=/usr/bin:/bin spool-agent -c "$CONF" --check-config 2>&1) ||
	fail "the shipped $CONF fails --check-config as master-log: $out"
say "$out"

# the -dev package: a program built against it with pkg-config, run
cat >"$TMP/dev.c" <<'EOF'
#include <spool/mlog.h>
#include <spool/spool.h>
#include <stdio.h>
int main(void)
{
	struct spool_options o;
	spool_options_init(&o);
	printf("%s\n", spool_strerror(0));
	return 0;
}
EOF
# shellcheck disable=SC2046
cc -o "$TMP/dev" "$TMP/dev.c" $(pkg-config --cflags --libs mlog spool) ||
	fail "cannot build against libmaster-log-spool-dev"
"$TMP/dev" >/dev/null || fail "a program built against libmaster-log-spool-dev does not run"
# shellcheck disable=SC2046
cc -o "$TMP/dev-static" "$TMP/dev.c" /usr/lib/*/libspool.a $(pkg-config --cflags --libs --static spool | sed 's/-lspool//') ||
	fail "cannot link the static libspool.a"

# master-log-spool-nats: the relay, and the transport in the agent's
# plugin folder, each in that package alone
out=$(mlog-relay --version 2>&1) || fail "mlog-relay --version: $out"
say "$out"
plugin=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/master-log-spool/plugins/nats.so
[ -f "$plugin" ] || fail "no $plugin after installation"
for f in /usr/bin/mlog-relay "$plugin" /usr/share/man/man8/mlog-relay.8.gz; do
	owner=$(dpkg-query -S "$f" 2>/dev/null | cut -d: -f1)
	[ "$owner" = master-log-spool-nats ] || fail "$f belongs to '$owner', not master-log-spool-nats"
done
# the agent finds it by name in its own plugin folder (env -i: no
# SPOOL_PLUGIN_DIR) and loads it: --help-config lists its keys
printf 'transports: [nats]\nnats:\n  servers: [nats://127.0.0.1:4222]\n' >"$TMP/nats.yaml"
keys=$(env -i PATH=/usr/bin:/bin spool-agent -c "$TMP/nats.yaml" --help-config)
grep -q "loaded from $plugin" <<<"$keys" || fail "spool-agent --help-config does not list the keys of $plugin"
say "mlog-relay and $plugin installed by master-log-spool-nats; spool-agent loads it"

# ---- 3. the main job from the installed files ----
mlog-receiver --listen 127.0.0.1 --port 0 --port-file "$TMP/rx.port" --api-key "$API_KEY" \
	--out "$TMP/received.jsonl" >"$TMP/receiver.log" 2>&1 &
rx_pid=$!
pids+=("$rx_pid")
wait_for 10 "mlog-receiver's port" test -s "$TMP/rx.port"
read -r port _ <"$TMP/rx.port"
endpoint=http://127.0.0.1:$port

# the agent as master-log, from the shipped configuration (the key from the
# environment: the file leaves it out)
setpriv --reuid=master-log --regid=master-log --init-groups -- \
	env -i PATH=/usr/bin:/bin MASTER_LOG_API_KEY="$API_KEY" \
	spool-agent -c "$CONF" --endpoint "$endpoint" >"$TMP/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
wait_for 10 "spool-agent to start (its log: $TMP/agent.log)" grep -q "started:" "$TMP/agent.log"
[ "$(stat -c %U "/proc/$agent_pid")" = master-log ] || fail "spool-agent does not run as master-log"

producers=()
for u in "$USER_A" "$USER_B" "$USER_OUT"; do
	useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
	made_users+=("$u")
done
usermod -a -G master-log "$USER_A"
usermod -a -G master-log "$USER_B"
producers=("$USER_A" "$USER_B")
n=0
for u in "${producers[@]}"; do
	for i in 1 2 3; do
		setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups -- \
			env -i PATH=/usr/bin:/bin MASTER_LOG_SPOOL_DIR="$SPOOL" \
			mlog -t package-test -m producer="$u" "package test event $i from $u" ||
			fail "mlog as $u failed"
		n=$((n + 1))
	done
done
received() { [ -f "$TMP/received.jsonl" ] && [ "$(wc -l <"$TMP/received.jsonl")" -ge "$1" ]; }
wait_for 30 "$n events at mlog-receiver (agent log: $TMP/agent.log)" received "$n"
for u in "${producers[@]}"; do
	for i in 1 2 3; do
		grep -q "package test event $i from $u" "$TMP/received.jsonl" || fail "event $i from $u not received"
	done
done
say "$n events from ${producers[*]} delivered by spool-agent (user master-log)"

# a user outside the group: refused with a message naming the group,
# and it can read nothing of the spool
if out=$(setpriv --reuid="$USER_OUT" --regid="$(id -g "$USER_OUT")" --init-groups -- \
	env -i PATH=/usr/bin:/bin MASTER_LOG_SPOOL_DIR="$SPOOL" mlog "from outside" 2>&1); then
	fail "mlog as $USER_OUT (not in group master-log) succeeded"
fi
echo "$out" | grep -q master-log || fail "the refusal does not name the group master-log: $out"
if setpriv --reuid="$USER_OUT" --regid="$(id -g "$USER_OUT")" --init-groups -- ls "$SPOOL" >/dev/null 2>&1; then
	fail "$USER_OUT can list $SPOOL"
fi

# events the agent cannot deliver (the receiver is gone): they stay
kill "$rx_pid"
wait "$rx_pid" 2>/dev/null || true
for i in 1 2 3; do
	setpriv --reuid="${producers[0]}" --regid="$(id -g "${producers[0]}")" --init-groups -- \
		env -i PATH=/usr/bin:/bin MASTER_LOG_SPOOL_DIR="$SPOOL" mlog "undelivered $i" ||
		fail "mlog (undelivered $i) failed"
done
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
grep -q "stopping on signal" "$TMP/agent.log" || fail "spool-agent did not stop on SIGTERM: $(tail -n 5 "$TMP/agent.log")"
pending=$(spoolctl --spool "$SPOOL" status --json | sed -n 's/.*"pending":\([0-9]*\).*/\1/p')
[ "$pending" = 3 ] || fail "$pending events pending before removal, expected 3"
sum=$(sha256sum "$SPOOL/data.mdb")

# ---- 4. remove, purge: the spool stays ----
# (apt-get cannot purge what it no longer finds in a repository: dpkg does)
for action in "apt-get remove -y -qq" "dpkg --purge"; do
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $action "${PACKAGES[@]}" >"$TMP/uninstall.log" 2>&1 ||
		{ cat "$TMP/uninstall.log"; fail "$action failed"; }
	[ ! -e /usr/bin/spool-agent ] || fail "spool-agent still installed after $action"
	[ ! -e /usr/bin/mlog-relay ] || fail "mlog-relay still installed after $action"
	[ ! -e "$plugin" ] || fail "$plugin still installed after $action"
	[ -d "$SPOOL" ] || fail "$action deleted $SPOOL"
	[ "$(sha256sum "$SPOOL/data.mdb")" = "$sum" ] || fail "$action changed $SPOOL/data.mdb"
	say "after $action: $SPOOL is there, data.mdb unchanged"
done
for p in "${PACKAGES[@]}"; do
	! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok " || fail "$p is still known to dpkg after the purge"
done
[ ! -e "$CONF" ] || fail "$CONF is left after the purge"
if command -v mdb_stat >/dev/null 2>&1; then
	entries=$(mdb_stat -s events "$SPOOL" | sed -n 's/^ *Entries: //p')
	[ "$entries" = 3 ] || fail "$entries events in the spool after the purge, expected 3"
	say "after the purge the spool holds its 3 undelivered events (mdb_stat)"
fi
