#!/bin/sh
# run.sh — the long power-loss run (issue 7): IMAGES images per spool mode
# over RUNS workload runs, then the raw-LMDB controls: MDB_NOSYNC and
# MDB_NOMETASYNC must show loss or corruption, default flags must not.
# The commit rings in those images are modelled page by page (issue 17);
# then the ring control: commit-mode images checked with a broken ring
# recovery (RING_CONTROL_IMAGES, default 500) must fail.
# Then the creation run (issue 17): a crash image at each of the first 30
# file operations of a new spool, CREATION_SEEDS (default 30) images each,
# over 2 runs per mode, never-synced sectors zero or garbage.
# Prints the summary tables; exits non-zero if a spool mode broke a promise
# or a control failed to fail.
#
#   tests/powerloss/run.sh BUILD_DIR [IMAGES] [RUNS] [SEED]
set -eu
build=${1:?usage: run.sh BUILD_DIR [IMAGES] [RUNS] [SEED]}
images=${2:-2000}
runs=${3:-10}
seed=${4:-1}
dir=$(cd "$build/tests/powerloss" && pwd)
status=0
"$dir/powerloss-harness" --shim "$dir/powerloss-shim.so" \
	--workload "$dir/powerloss-workload" \
	--modes 'sync,commit,buffered,raw-default,raw-nometasync!,raw-nosync!' \
	--events 200 --runs "$runs" --images "$images" --seed "$seed" || status=1
"$dir/powerloss-harness" --shim "$dir/powerloss-shim.so" \
	--workload "$dir/powerloss-workload" --modes 'commit!' --skip-ring-check \
	--events 200 --runs 2 --images "${RING_CONTROL_IMAGES:-500}" --seed "$seed" || status=1
"$dir/powerloss-harness" --shim "$dir/powerloss-shim.so" \
	--workload "$dir/powerloss-workload" --modes 'sync,commit,buffered' \
	--events 20 --runs 2 --creation 30 --seeds "${CREATION_SEEDS:-30}" --garbage-new \
	--seed "$seed" || status=1
exit $status
