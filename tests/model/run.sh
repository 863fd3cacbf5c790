#!/bin/sh
# run.sh — the long size of the model-based spool test: many seeds of many
# steps, in batches of BATCH seeds (each batch one run of the test program
# with its own master seed), stopping at the time cap.  Prints every
# failure report and one summary line:
#   FIGURES scenario=model rounds=.. steps=.. events=.. lost=.. duplicates=.. crashes=..
# Usage: tests/model/run.sh [build-dir]
# Environment: MODEL_SEEDS (200), MODEL_STEPS (2000), MODEL_TIME_CAP (600 s),
# MODEL_BATCH (10).
set -u
build=${1:-build}
exe="$build/tests/model/test_model"
seeds=${MODEL_SEEDS:-200}
steps=${MODEL_STEPS:-2000}
cap=${MODEL_TIME_CAP:-600}
batch=${MODEL_BATCH:-10}
if [ ! -x "$exe" ]; then
	echo "run.sh: $exe not built" >&2
	exit 2
fi
log=$(mktemp /tmp/spool-model-run-XXXXXX)
start=$(date +%s)
done_seeds=0
failed=0
while [ "$done_seeds" -lt "$seeds" ]; do
	now=$(date +%s)
	if [ $((now - start)) -ge "$cap" ]; then
		echo "run.sh: time cap of $cap s reached after $done_seeds seeds"
		break
	fi
	n=$batch
	[ $((seeds - done_seeds)) -lt "$n" ] && n=$((seeds - done_seeds))
	out=$(MODEL_SEEDS=$n MODEL_STEPS=$steps CK_DEFAULT_TIMEOUT=3600 nice "$exe" 2>&1)
	rc=$?
	echo "$out" | grep -E '^FIGURES' | tail -n 1 >> "$log"
	if [ $rc -ne 0 ]; then
		failed=$((failed + 1))
		echo "$out" | sed -n '/MODEL FAILURE/,/^FIGURES/p'
		echo "$out" | grep -E ':[EF]:' || true
	fi
	echo "$out" | grep -E '^model: seed' | sed 's/^/batch: /'
	done_seeds=$((done_seeds + n))
done
end=$(date +%s)
awk -v t=$((end - start)) -v failed=$failed '
	{ for (i = 2; i <= NF; i++) { split($i, kv, "="); sum[kv[1]] += kv[2] } }
	END {
		printf "model long run: %d s, %d failing batches\n", t, failed
		printf "FIGURES scenario=model rounds=%d steps=%d events=%d lost=%d duplicates=%d crashes=%d\n",
			sum["rounds"], sum["steps"], sum["events"], sum["lost"], sum["duplicates"], sum["crashes"]
	}' "$log"
rm -f "$log"
[ "$failed" -eq 0 ]
