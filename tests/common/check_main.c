/* One main() for the Check test programs: see check_main.h. */
#include "check_main.h"

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The runner's mark in its scratch folders' names (tc_scratch_dir()): set
 * in the environment by tc_run_with(), so that the forked tests see it. */
#define RUN_ENV "TC_RUN_ID"

/* This process's mark: "r" and its pid. */
static void run_mark(char *buf, size_t len)
{
	snprintf(buf, len, "r%ld", (long)getpid());
}

int tc_scratch_dir(char *buf, size_t len, const char *name)
{
	const char *run = getenv(RUN_ENV);
	char own[32];
	if (!run || !*run) {
		run_mark(own, sizeof(own));
		run = own;
	}
	if ((size_t)snprintf(buf, len, "/tmp/%s-%s-XXXXXX", name, run) >= len)
		return -ENAMETOOLONG;
	return mkdtemp(buf) ? 0 : -errno;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tc_remove_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes what tc_scratch_dir() made for this runner and is still there. */
static void scratch_sweep(const char *run)
{
	char pattern[64];
	snprintf(pattern, sizeof(pattern), "/tmp/*-%s-??????", run);
	glob_t g;
	if (glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		/* AGENT_TEST_KEEP: the agent harness keeps its folders (passed
		 * or not) for a look afterwards */
		if (getenv("TC_KEEP") || getenv("AGENT_TEST_KEEP")) {
			fprintf(stderr, "tests: kept %s\n", g.gl_pathv[i]);
			continue;
		}
		tc_remove_tree(g.gl_pathv[i]);
		fprintf(stderr, "tests: removed %s, left by a test that did not finish (TC_KEEP=1 keeps it)\n",
			g.gl_pathv[i]);
	}
	globfree(&g);
}

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
	char run[32];
	run_mark(run, sizeof(run));
	setenv(RUN_ENV, run, 1);
	srunner_run_all(sr, opt->print);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	scratch_sweep(run);
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
