/* test_systemd.c — spool-agent as systemd runs it (Type=notify, the
 * watchdog, stderr to the journal), without systemd: the test plays the
 * service manager.  It binds the notify socket ($NOTIFY_SOCKET), sets
 * $WATCHDOG_USEC/$WATCHDOG_PID and $JOURNAL_STREAM (the device and inode of
 * the file it gives the agent as stderr) as systemd does, and runs the real
 * agent on a spool of its own with the file transport.  It reads what the
 * agent says on the socket and in the file:
 * - READY=1 once the agent drains, WATCHDOG=1 again and again, RELOADING=1
 *   then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, exit 0;
 * - log lines that begin with their syslog priority (<6> for info) and no
 *   time stamp, and the usual time-stamped lines when $JOURNAL_STREAM names
 *   another file;
 * - nothing on the socket from an agent started with --exit-idle (as the
 *   client library starts it), which may have inherited a service's socket.
 * Built only with libsystemd (meson option systemd). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"

/* A bound for waiting on the agent, not a measure: the test fails only if
 * nothing at all came. */
#define WAIT_SECONDS 60

static const char *agent_path;
static char dir[64];
static char sock_path[100], conf_path[128], err_path[128], other_path[128];
static int sock = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/site-systemd-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/agent.yaml", dir);
	snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
	snprintf(other_path, sizeof(other_path), "%s/other", dir);
	FILE *f = fopen(conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "spool: %s/spool\ntransports: [file]\nfile:\n  path: %s/out.jsonl\n", dir, dir);
	fclose(f);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(sock, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void teardown(void)
{
	if (sock >= 0)
		close(sock);
	sock = -1;
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* "DEV:INO" of a file, as systemd writes $JOURNAL_STREAM. */
static void stream_id(const char *path, char *buf, size_t len)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	snprintf(buf, len, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

/* Starts the agent with stderr to err_path and the systemd variables;
 * journal_of: the file $JOURNAL_STREAM names. */
static pid_t start_agent(const char *journal_of, const char *extra_arg)
{
	int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	int ofd = open(other_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(ofd, 0);
	close(ofd);
	char js[64];
	stream_id(journal_of, js, sizeof(js));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char wpid[32];
		snprintf(wpid, sizeof(wpid), "%ld", (long)getpid());
		dup2(fd, STDERR_FILENO);
		setenv("NOTIFY_SOCKET", sock_path, 1);
		setenv("WATCHDOG_USEC", "200000", 1); /* a ping every 0.1 s */
		setenv("WATCHDOG_PID", wpid, 1);
		setenv("JOURNAL_STREAM", js, 1);
		execl(agent_path, "spool-agent", "-c", conf_path, "--log-level", "debug", extra_arg,
		      (char *)NULL);
		_exit(127);
	}
	close(fd);
	return pid;
}

/* The next datagram, or "" when none came within WAIT_SECONDS. */
static void next_message(char *buf, size_t len, int seconds)
{
	struct pollfd pf = {.fd = sock, .events = POLLIN};
	buf[0] = '\0';
	if (poll(&pf, 1, seconds * 1000) <= 0)
		return;
	ssize_t n = recv(sock, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
}

/* Reads datagrams until one holds `want`; counts the WATCHDOG=1 ones on
 * the way.  Fails when the agent said nothing for WAIT_SECONDS. */
static void expect(const char *want, int *watchdogs)
{
	char m[512];
	for (;;) {
		next_message(m, sizeof(m), WAIT_SECONDS);
		ck_assert_msg(m[0], "no '%s' from the agent on the notify socket", want);
		if (strcmp(m, "WATCHDOG=1") == 0 && watchdogs)
			(*watchdogs)++;
		if (strstr(m, want))
			return;
		/* nothing but these comes between */
		ck_assert_msg(strcmp(m, "WATCHDOG=1") == 0, "unexpected '%s' while waiting for '%s'", m, want);
	}
}

static int wait_exit(pid_t pid)
{
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st), "spool-agent did not exit normally (status %d)", st);
	return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
	static char buf[1 << 16];
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(notify_ready_watchdog_reload_stopping)
{
	pid_t pid = start_agent(err_path, NULL);
	expect("READY=1", NULL);
	int watchdogs = 0;
	while (watchdogs < 3)
		expect("WATCHDOG=1", &watchdogs);
	kill(pid, SIGHUP);
	expect("RELOADING=1", NULL);
	expect("READY=1", NULL);
	kill(pid, SIGTERM);
	expect("STOPPING=1", NULL);
	ck_assert_int_eq(wait_exit(pid), 0);

	/* stderr is the "journal": every line starts with its priority */
	char *log = slurp(err_path);
	ck_assert_msg(strstr(log, "<6>started: spool "), "no '<6>started:' line in:\n%s", log);
	ck_assert_msg(strstr(log, "<7>systemd watchdog: a ping every 0.1 s"), "no watchdog line in:\n%s", log);
	ck_assert_msg(strstr(log, "<6>reloaded: "), "no '<6>reloaded:' line in:\n%s", log);
	for (char *line = log; *line; line = strchr(line, '\n') + 1) {
		ck_assert_msg(line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>',
			      "a line without a priority prefix: %.80s", line);
		ck_assert_ptr_nonnull(strchr(line, '\n'));
	}
}
END_TEST

START_TEST(stderr_not_the_journal_keeps_time_stamps)
{
	/* $JOURNAL_STREAM names another file: stderr was redirected */
	pid_t pid = start_agent(other_path, NULL);
	expect("READY=1", NULL);
	kill(pid, SIGTERM);
	expect("STOPPING=1", NULL);
	ck_assert_int_eq(wait_exit(pid), 0);
	char *log = slurp(err_path);
	ck_assert_msg(strncmp(log, "20", 2) == 0 && strstr(log, "Z spool-agent["), "not a time-stamped line:\n%s",
		      log);
	ck_assert_msg(!strstr(log, "<6>"), "a priority prefix off the journal:\n%s", log);
}
END_TEST

START_TEST(agent_of_the_library_ignores_the_notify_socket)
{
	/* --exit-idle, as the client library starts it: it exits by itself
	 * once the (empty) spool has been idle, and says nothing on a socket
	 * it may have inherited from its producer's service */
	pid_t pid = start_agent(err_path, "--exit-idle=0.5");
	ck_assert_int_eq(wait_exit(pid), 0);
	char m[512];
	next_message(m, sizeof(m), 0);
	ck_assert_msg(m[0] == '\0', "an agent started with --exit-idle sent '%s'", m);
	ck_assert_msg(strstr(slurp(err_path), "exiting (--exit-idle)"), "it did not run: %s", slurp(err_path));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("site-systemd");
	TCase *tc = tcase_create("notify");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, notify_ready_watchdog_reload_stopping);
	tcase_add_test(tc, stderr_not_the_journal_keeps_time_stamps);
	tcase_add_test(tc, agent_of_the_library_ignores_the_notify_socket);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	agent_path = getenv("SPOOL_AGENT");
	if (!agent_path) {
		fprintf(stderr, "SPOOL_AGENT is not set\n");
		return 1;
	}
	return tc_run(suite());
}
