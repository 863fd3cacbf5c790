#!/usr/bin/env bash
# run.sh — build the libFuzzer targets (if needed) and fuzz each for N
# seconds.
#
#   bash tests/fuzz/run.sh [SECONDS] [TARGET...]
#     SECONDS  per target, default 60
#     TARGET   record json endpoint config http (default: all)
#   FUZZ_BUILD_DIR  build directory, default build-fuzz (configured with
#                   CC=clang -Dfuzz=true when missing)
#
# New inputs go to $FUZZ_BUILD_DIR/fuzz-work/<target>/ (the committed seed
# corpus in tests/fuzz/corpus/<target>/ is only read); crashes, leaks and
# timeouts to $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/, logs to
# $FUZZ_BUILD_DIR/fuzz-logs/<target>.log.  Prints one line per target:
# executions, exec/s, coverage, corpus size, crashes.  Exit status 1 when
# any target found a crash.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(record json endpoint config http)
bdir=${FUZZ_BUILD_DIR:-build-fuzz}
case $bdir in /*) ;; *) bdir=$src/$bdir ;; esac

if [ ! -f "$bdir/build.ninja" ]; then
	CC=clang meson setup "$bdir" "$src" -Dfuzz=true
fi
ninja -C "$bdir" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") >/dev/null

status=0
printf '%-9s %12s %9s %8s %8s %13s %8s\n' target executions exec/s cov features corpus crashes
for t in "${targets[@]}"; do
	exe=$bdir/tests/fuzz/fuzz_$t
	work=$bdir/fuzz-work/$t
	art=$bdir/fuzz-artifacts/$t
	log=$bdir/fuzz-logs/$t.log
	mkdir -p "$work" "$art" "$(dirname "$log")"
	before=$(find "$art" -type f | wc -l)
	# stdin from /dev/null: nothing a target reads may block on a terminal
	"$exe" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$art/" "$work" "$src/tests/fuzz/corpus/$t" \
		</dev/null >"$log" 2>&1 || true
	after=$(find "$art" -type f | wc -l)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	new=$((after - before))
	printf '%-9s %12s %9s %8s %8s %13s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
		"${ft:-?}" "${corp:-?}" "$new"
	if [ "$new" -gt 0 ]; then
		status=1
		grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz_[a-z]+: ' "$log" \
			| sed 's/^/          /' || true
		echo "          log: $log; reproducers: $art/"
	fi
done
exit $status
