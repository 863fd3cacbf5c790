/* file.c — the `file` transport: appends each event as one JSON line to
 * `file.path` and acknowledges the request once the file is fdatasync'ed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/json.h"
#include "transports.h"

enum { FILE_PATH, FILE_NKEYS };

static const struct spool_tx_option file_options[FILE_NKEYS] = {
	[FILE_PATH] = {"path", SPOOL_TX_STRING, SPOOL_TX_OUT_FILE, NULL, NULL, 0, 0, NULL,
		       "output of the `file` transport (JSON lines; its folder must exist)"},
};

struct file_state {
	const struct spool_tx_config *cfg;
	const char *path;
	int fd;
	struct spool_buf buf;
};

static int file_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen)
{
	if (n < FILE_NKEYS || !v[FILE_PATH].set) {
		*key = FILE_PATH;
		snprintf(why, whylen, "not set; the file transport needs it");
		return -1;
	}
	return 0;
}

static int file_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	size_t key;
	if (file_check(cfg->values, cfg->nvalues, &key, err, errlen))
		return -EINVAL;
	struct file_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->cfg = cfg;
	st->path = cfg->values[FILE_PATH].text;
	st->fd = open(st->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (st->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", st->path, strerror(e));
		free(st);
		return -e;
	}
	*out = st;
	return 0;
}

static void file_destroy(void *p)
{
	struct file_state *st = p;
	if (!st)
		return;
	close(st->fd);
	spool_buf_free(&st->buf);
	free(st);
}

static int file_send(void *p, struct spool_tx_request *req)
{
	struct file_state *st = p;
	st->buf.len = 0;
	for (size_t i = 0; i < req->count; i++)
		if (spool_buf_append(&st->buf, req->events[i].json, req->events[i].json_len) ||
		    spool_buf_append(&st->buf, "\n", 1))
			return -ENOMEM;
	req->wire_bytes = st->buf.len; /* what is written: each line and its newline */
	struct stat sb;
	off_t start = fstat(st->fd, &sb) == 0 ? sb.st_size : -1;
	size_t off = 0;
	int err = 0;
	while (off < st->buf.len) {
		ssize_t w = write(st->fd, st->buf.data + off, st->buf.len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		off += (size_t)w;
	}
	if (!err && fdatasync(st->fd) != 0)
		err = errno;
	if (err) {
		/* nothing counts as delivered: take the partial lines back */
		if (start >= 0 && ftruncate(st->fd, start) != 0)
			st->cfg->log(st->cfg->log_ctx, SPOOL_TX_LOG_ERR, "%s: cannot truncate back: %s", st->path,
				     strerror(errno));
		req->status.call = SPOOL_TXC_TRANSIENT;
		snprintf(req->status.message, sizeof(req->status.message), "%s: %s", st->path, strerror(err));
		return 0;
	}
	for (size_t i = 0; i < req->count; i++)
		req->out[i].result = SPOOL_TX_ACCEPTED;
	return 0;
}

const struct spool_transport spool_tx_file = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "file",
	.description = "append JSON lines to file.path; acknowledged once fdatasync'ed",
	.section = "file",
	.options = file_options,
	.noptions = FILE_NKEYS,
	.check = file_check,
	.create = file_create,
	.destroy = file_destroy,
	.send = file_send,
};
