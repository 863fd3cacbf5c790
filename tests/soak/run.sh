#!/usr/bin/env bash
# run.sh — the long reliability run (issue 7).  Runs every scenario at its
# long size against an existing build and prints the FIGURES lines as the
# README's table.  Takes about 40 minutes on the 2-core development machine
# (the model step stops at MODEL_TIME_CAP seconds, default 600).
#
#   bash tests/soak/run.sh [BUILD_DIR] [LOG_DIR]
#     BUILD_DIR  default build (set up by scripts/setup.sh)
#     LOG_DIR    default BUILD_DIR/soak-logs: one log per step
#   SOAK_STEPS   which steps, default "scenario model badinput powerloss
#                ioerr lockstress"; add "fuzz" to run tests/fuzz/run.sh (needs
#                clang)
#   LOCK_STRESS_MINUTES  the lockstress step's length, default 30 (processes
#                SIGKILLed within milliseconds, a watchdog for any stuck in
#                the library: tests/soak/lockstress.c)
#
# Exit status 1 when any step failed; the table shows what each one tried
# and lost.
set -uo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
logs=${2:-$build/soak-logs}
steps=${SOAK_STEPS:-scenario model badinput powerloss ioerr lockstress}
mkdir -p "$logs"
[ -f "$build/build.ninja" ] || { echo "soak: $build is not a build directory (run scripts/setup.sh)" >&2; exit 2; }
ninja -C "$build" >/dev/null || { echo "soak: build failed" >&2; exit 2; }

status=0
step() { # name, then the command
	local name=$1
	shift
	local t0=$SECONDS
	echo "soak: $name ..." >&2
	if "$@" >"$logs/$name.log" 2>&1; then
		echo "soak: $name passed in $((SECONDS - t0)) s (log $logs/$name.log)" >&2
	else
		echo "soak: $name FAILED in $((SECONDS - t0)) s (log $logs/$name.log)" >&2
		status=1
	fi
}

for s in $steps; do
	case $s in
	scenario)
		step scenario env SCENARIO_SIZE=long meson test -C "$build" --suite scenario \
			--timeout-multiplier 4 --print-errorlogs -v ;;
	model)
		step model env MODEL_TIME_CAP="${MODEL_TIME_CAP:-600}" sh "$src/tests/model/run.sh" "$build" ;;
	badinput)
		step badinput meson test -C "$build" badinput --print-errorlogs -v ;;
	powerloss)
		step powerloss bash "$src/tests/powerloss/run.sh" "$build" 2000 10 31 ;;
	ioerr)
		step ioerr meson test -C "$build" ioerr --print-errorlogs -v ;;
	fuzz)
		step fuzz bash "$src/tests/fuzz/run.sh" 60 ;;
	lockstress)
		shm=/tmp
		[ -d /dev/shm ] && shm=/dev/shm
		step lockstress "$build/tests/soak/lock-stress" --dir "$shm/lock-stress-$$" \
			--seconds $((${LOCK_STRESS_MINUTES:-30} * 60)) --procs 3 ;;
	*)
		echo "soak: unknown step '$s'" >&2
		exit 2 ;;
	esac
done

echo
echo "| scenario | rounds | events | lost | duplicates | crashes | more |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
cat "$logs"/*.log 2>/dev/null | grep -ho 'FIGURES .*' | sort -u | awk '{
	delete f; more = ""
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] ~ /^(scenario|rounds|events|lost|duplicates|crashes)$/) f[kv[1]] = kv[2]
		else more = more (more == "" ? "" : " ") $i
	}
	printf "| %s | %s | %s | %s | %s | %s | %s |\n", f["scenario"], f["rounds"], f["events"],
		f["lost"], f["duplicates"], f["crashes"], more
}'
exit "$status"
