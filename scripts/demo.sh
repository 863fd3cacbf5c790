#!/usr/bin/env bash
# Sets up and builds (scripts/setup.sh), then runs the main job.  Until the
# agent exists, that is: spool events into a spool directory on disk in each
# durability mode, read them back, check them, acknowledge them, and show the
# spool's figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
SPOOL=${SPOOL:-$(mktemp -d /var/tmp/master-log-demo.XXXXXX)}
for mode in sync commit buffered; do
  "${BUILD_DIR:-build}/tools/spool-selftest" --spool "$SPOOL/$mode" --durability "$mode" --events 1000
done
echo "demo: spools left in $SPOOL for inspection"
