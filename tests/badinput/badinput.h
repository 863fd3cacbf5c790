/* badinput.h — the bad-input sweep (tests/badinput/): one hostile input per
 * case, logged through libmlog (async into the spool, drained by the real
 * spool-agent; direct send) and through the `mlog` command, against the
 * real mlog-receiver.  cases.c builds the list; test_badinput.c runs each
 * call in a child process, then accounts for every accepted event. */
#ifndef BADINPUT_H
#define BADINPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <spool/mlog.h>

/* The ways a case is logged (a mask). */
enum {
	BI_ASYNC = 1u << 0,  /* mlog_client_send() (or mlog_ex() with printf_path) into the spool */
	BI_DIRECT = 1u << 1, /* the same with async_mode off: POST now */
	BI_CMD = 1u << 2,    /* the mlog command */
	BI_RAW = 1u << 3,    /* spool_event_encode() + spool_append(): no libmlog checks */
	BI_API = BI_ASYNC | BI_DIRECT,
	BI_ALL = BI_API | BI_CMD,
};

enum bi_expect {
	BI_ARRIVE, /* accepted, and at the receiver intact (invalid UTF-8 repaired) */
	BI_REFUSE, /* refused at the call; the error holds every word of `words` */
	BI_DEAD,   /* accepted, then dead-lettered with a reason holding `words` */
};

struct bi_case {
	char name[40];
	unsigned ways;
	enum bi_expect expect;
	const char *words[3]; /* NULL-terminated early when fewer */
	/* the event (all owned by the case) */
	char *msg;
	size_t len;
	enum mlog_severity severity;
	char *title;
	char **tags; /* NULL-terminated; NULL: none */
	char *meta_json;
	struct mlog_kv *kv;
	size_t nkv;
	/* how */
	bool printf_path; /* API: the process-wide client, mlog_ex(opts, "%s", ...) */
	bool cmd_stdin;   /* command: the message as a line of standard input ('-') */
};

struct bi_list {
	struct bi_case *c;
	size_t n, cap;
};

/* Builds every case (cases.c). */
void bi_cases(struct bi_list *l);
void bi_cases_free(struct bi_list *l);

/* The documented repair: each byte that does not belong to a well-formed
 * UTF-8 sequence becomes U+FFFD.  Returns a malloc'd copy; *olen its length. */
char *bi_repair(const char *s, size_t len, size_t *olen);
/* true when s[0, len) is well-formed UTF-8. */
bool bi_utf8_ok(const char *s, size_t len);

#endif
