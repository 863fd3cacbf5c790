/* strace_util.h — for tests that run programs under `strace -e inject` to
 * make system calls fail (tests/ioerr, tests/agent's agent-crash).
 *
 * Link with tests_common_dep (tests/common/meson.build). */
#ifndef TESTS_COMMON_STRACE_UTIL_H
#define TESTS_COMMON_STRACE_UTIL_H

#include <stddef.h>

/* 0 when strace can trace and inject here; else -1 with a reason in why
 * (strace missing, or ptrace refused as in some containers). */
int tc_strace_usable(char *why, size_t len);

/* Appends detect_leaks=0 to ASAN_OPTIONS for the programs started from
 * now on: LeakSanitizer refuses to run under ptrace; the address and
 * undefined-behaviour checks stay on. */
void tc_asan_without_leaks(void);

#endif
