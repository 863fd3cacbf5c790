/* strace_util.c — see strace_util.h. */
#include "strace_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int tc_strace_usable(char *why, size_t len)
{
	char out[512];
	FILE *p = popen("strace -f -o /dev/null -e inject=getppid:error=EIO:when=1 sh -c 'exit 0' 2>&1", "r");
	if (!p) {
		snprintf(why, len, "cannot run the shell");
		return -1;
	}
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	if (st == -1) {
		snprintf(why, len, "cannot run the shell");
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
			out[--n] = '\0';
		snprintf(why, len, "strace missing or cannot trace (exit %d): %s",
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1, out[0] ? out : "no output");
		return -1;
	}
	return 0;
}

void tc_asan_without_leaks(void)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}
