#!/bin/sh
# run.sh — the long power-loss run (issue 7): IMAGES images per spool mode
# over RUNS workload runs, then the raw-LMDB controls: MDB_NOSYNC and
# MDB_NOMETASYNC must show loss or corruption, default flags must not.
# Prints the summary table; exits non-zero if a spool mode broke a promise
# or a control failed to fail.
#
#   tests/powerloss/run.sh BUILD_DIR [IMAGES] [RUNS] [SEED]
set -eu
build=${1:?usage: run.sh BUILD_DIR [IMAGES] [RUNS] [SEED]}
images=${2:-2000}
runs=${3:-10}
seed=${4:-1}
dir=$(cd "$build/tests/powerloss" && pwd)
exec "$dir/powerloss-harness" --shim "$dir/powerloss-shim.so" \
	--workload "$dir/powerloss-workload" \
	--modes 'sync,commit,buffered,raw-default,raw-nometasync!,raw-nosync!' \
	--events 200 --runs "$runs" --images "$images" --seed "$seed"
