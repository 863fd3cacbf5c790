/* wake.c — the agent's wake-up FIFO (spool/spool.h). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spool/spool.h>

#include "util.h"

static int wake_path(char *buf, size_t len, const char *dir)
{
	int n = snprintf(buf, len, "%s/%s", dir, SPOOL_WAKE_NAME);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int spool_wake_agent(const char *dir)
{
	char path[4096];
	if (!dir)
		return -EINVAL;
	int rc = wake_path(path, sizeof(path), dir);
	if (rc)
		return rc;
	/* O_WRONLY|O_NONBLOCK on a FIFO fails with ENXIO when no reader has it
	 * open, so a writer never waits for a missing agent. */
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENXIO || errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && !S_ISFIFO(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	/* An agent that dies between the open and the write leaves a FIFO with
	 * no reader: the write then fails with EPIPE and raises SIGPIPE, whose
	 * default action would kill the program that logs.  SIGPIPE is blocked
	 * in this thread for the write, and one it raised is taken back unless
	 * one was pending already. */
	sigset_t pipe_set, old_mask, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigemptyset(&pending);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
	sigpending(&pending);
	bool was_pending = sigismember(&pending, SIGPIPE) == 1;
	char c = 1;
	ssize_t w = write(fd, &c, 1);
	int err = w < 0 ? errno : 0;
	if (err == EPIPE && !was_pending) {
		static const struct timespec now = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &now) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	close(fd);
	if (w < 0 && err != EAGAIN && err != EPIPE)
		return -err;
	return 0;
}

int spool_wake_open(const char *dir)
{
	char path[4096];
	if (!dir)
		return -EINVAL;
	int rc = wake_path(path, sizeof(path), dir);
	if (rc)
		return rc;
	/* shared spool: made aside with its mode, then given its name, so a
	 * producer of the group never finds it without the right to write */
	mode_t fmode = spool_file_mode(dir);
	if (fmode & 0070) {
		char tmp[4200];
		snprintf(tmp, sizeof(tmp), "%s.new-%ld", path, (long)getpid());
		unlink(tmp);
		if (access(path, F_OK) != 0 && mkfifo(tmp, fmode) == 0) {
			if (chmod(tmp, fmode) != 0 || (link(tmp, path) != 0 && errno != EEXIST)) {
				int e = errno;
				unlink(tmp);
				return -e;
			}
			unlink(tmp);
		}
	}
	if (mkfifo(path, 0600) != 0 && errno != EEXIST)
		return -errno;
	/* O_RDWR: the FIFO always has a writer (us), so poll() never reports
	 * an endless hang-up once producers close their ends. */
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
		close(fd);
		return -EEXIST;
	}
	return fd;
}

int spool_wake_drain(int fd)
{
	char buf[256];
	int total = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			total += (int)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return total;
	}
}
