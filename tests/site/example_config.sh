#!/bin/sh
# The shipped configuration (conf/spool-agent.yaml, installed as
# <sysconfdir>/master-log/spool-agent.yaml) passes --check-config as it is,
# with no MASTER_LOG_* variable set and with MASTER_LOG_API_KEY exported
# (the file leaves the key out: the variable is used); and a copy naming an
# api_key_file passes beside an exported MASTER_LOG_API_KEY (the file wins,
# docs/agent.md).  $1: spool-agent, $2: the example file.
set -u
agent=$1
conf=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for v in $(env | sed -n 's/^\(MASTER_LOG_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
fail() { echo "FAIL: $*"; exit 1; }

out=$("$agent" -c "$conf" --check-config 2>&1) || fail "as shipped: $out"
echo "$out" | grep -q "configuration OK" || fail "as shipped: $out"
echo "$out" | grep -q "api key (none)" || fail "as shipped, no key expected: $out"

out=$(MASTER_LOG_API_KEY=exported-key-ABCD "$agent" -c "$conf" --check-config 2>&1) ||
	fail "with MASTER_LOG_API_KEY: $out"
echo "$out" | grep -q 'api key \.\.\.ABCD' || fail "the exported key is not used: $out"

printf 'key-from-file-WXYZ\n' >"$tmp/api-key"
chmod 600 "$tmp/api-key"
sed "s|^  api_key:\$|  api_key_file: $tmp/api-key|" "$conf" >"$tmp/with-file.yaml"
grep -q "^  api_key_file: $tmp/api-key\$" "$tmp/with-file.yaml" || fail "could not name a key file in a copy"
out=$(MASTER_LOG_API_KEY=exported-key-ABCD "$agent" -c "$tmp/with-file.yaml" --check-config 2>&1) ||
	fail "api_key_file beside MASTER_LOG_API_KEY: $out"
echo "$out" | grep -q 'api key \.\.\.WXYZ' || fail "the file's key does not win: $out"
echo "example configuration: OK"
