#!/bin/sh
# systemd-analyze verify on the unit made from conf/spool-agent.service.in
# (the same template as the installed one, with this build tree's agent as
# ExecStart, since verify checks that the command exists).  Any word of
# verify's, a warning included, fails the test.  Skips (77) without
# systemd-analyze.  $1: the unit.
set -u
command -v systemd-analyze >/dev/null 2>&1 || { echo "no systemd-analyze: skipped"; exit 77; }
unit=$1
# man pages are checked by the Debian package test, once installed
out=$(systemd-analyze verify --man=no "$unit" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	echo "systemd-analyze verify $unit: exit $rc"
	echo "$out"
	exit 1
fi
for key in Type=notify User=master-log WatchdogSec= ProtectSystem=strict ReadWritePaths=/var/spool/master-log \
	ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes RestrictAddressFamilies= SystemCallFilter=@system-service; do
	grep -q "^$key" "$unit" || { echo "$unit: no $key"; exit 1; }
done
echo "systemd-analyze verify: clean"
