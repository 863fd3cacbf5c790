/* One main() for the Check test programs under tests/.
 *
 * Each helper builds an SRunner for the suite(s), runs every test, frees
 * the runner (and with it the suites) and returns the process exit status:
 * EXIT_SUCCESS when no test failed, EXIT_FAILURE otherwise.  A test
 * program's main() does its own setup first (environment, globals, skips
 * with exit 77), then returns one of these:
 *
 *	int main(void)
 *	{
 *		return tc_run(suite());
 *	}
 *
 * Link with tests_common_dep (tests/common/meson.build).
 */
#ifndef TESTS_COMMON_CHECK_MAIN_H
#define TESTS_COMMON_CHECK_MAIN_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

struct tc_options {
	/* Check's output mode for srunner_run_all: CK_NORMAL, or CK_ENV to
	 * take it from CK_VERBOSITY (silent, minimal, normal, verbose). */
	enum print_output print;
	/* false: Check's own default (fork unless CK_FORK=no in the
	 * environment).  true: set CK_FORK on the runner explicitly, with
	 * CK_FORK=no in the environment still winning, for debugging. */
	bool force_fork;
};

/* Runs suites[0..n-1] (n >= 1) in one runner, with opt (NULL: CK_NORMAL,
 * Check's default fork handling). */
int tc_run_with(Suite *const *suites, size_t n, const struct tc_options *opt);

/* One suite, CK_NORMAL output, Check's default fork handling. */
int tc_run(Suite *s);

/* Several suites in one runner, as tc_run. */
int tc_run_suites(Suite *const *suites, size_t n);

/* One suite, always in CK_FORK mode unless CK_FORK=no, output mode from
 * CK_VERBOSITY (CK_ENV): what the spool tests used to run their suites with. */
int tc_run_forked(Suite *s);

/* Makes a scratch folder /tmp/NAME-rPID-XXXXXX for a test (PID: the test
 * program's runner) and writes its path to buf: 0, or a negative errno.
 * When the runner ends, tc_run_with() removes every such folder its tests
 * left, unless TC_KEEP (or AGENT_TEST_KEEP) is set: a failed check ends a
 * forked test at once, before the test's own clean-up. */
int tc_scratch_dir(char *buf, size_t len, const char *name);
/* Removes path and everything below it (links are not followed). */
void tc_remove_tree(const char *path);

#endif
