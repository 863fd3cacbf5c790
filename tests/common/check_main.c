/* One main() for the Check test programs: see check_main.h. */
#include "check_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tc_run_with(Suite *const *suites, size_t n, const struct tc_options *opt)
{
	static const struct tc_options defaults = {.print = CK_NORMAL, .force_fork = false};
	if (opt == NULL)
		opt = &defaults;
	if (suites == NULL || n == 0) {
		fprintf(stderr, "tc_run_with: no suite to run\n");
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(suites[0]);
	for (size_t i = 1; i < n; i++)
		srunner_add_suite(sr, suites[i]);
	if (opt->force_fork) {
		srunner_set_fork_status(sr, CK_FORK);
		/* CK_FORK=no in the environment still wins, for debugging. */
		const char *f = getenv("CK_FORK");
		if (f && strcmp(f, "no") == 0)
			srunner_set_fork_status(sr, CK_NOFORK);
	}
	srunner_run_all(sr, opt->print);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int tc_run(Suite *s)
{
	return tc_run_with(&s, 1, NULL);
}

int tc_run_suites(Suite *const *suites, size_t n)
{
	return tc_run_with(suites, n, NULL);
}

int tc_run_forked(Suite *s)
{
	static const struct tc_options forked = {.print = CK_ENV, .force_fork = true};
	return tc_run_with(&s, 1, &forked);
}
