/* file.c — the `file` transport: appends each event as one JSON line to
 * `file.path` and acknowledges the batch once the file is fdatasync'ed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/json.h"
#include <spool/transport.h>

struct file_state {
	const struct spool_tx_config *cfg;
	int fd;
	struct spool_buf buf;
};

static int file_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	if (!cfg->file_path || !*cfg->file_path) {
		snprintf(err, errlen, "the file transport needs file.path");
		return -EINVAL;
	}
	struct file_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->cfg = cfg;
	st->fd = open(cfg->file_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (st->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", cfg->file_path, strerror(e));
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

static int file_send(void *p, const struct spool_tx_batch *b, struct spool_tx_outcome *out,
		     struct spool_tx_status *call)
{
	struct file_state *st = p;
	st->buf.len = 0;
	for (size_t i = 0; i < b->count; i++) {
		const struct spool_tx_event *ev = &b->events[i];
		struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = ev->seq};
		int rc = spool_event_to_json(ev->data, ev->len, &x, &st->buf);
		if (rc == -EINVAL) {
			out[i].result = SPOOL_TX_REJECTED;
			out[i].status = SPOOL_ECORRUPT;
			snprintf(out[i].reason, sizeof(out[i].reason),
				 "stored event is not a well-formed msgpack map");
			continue;
		}
		if (rc || spool_buf_append(&st->buf, "\n", 1))
			return -ENOMEM;
		out[i].result = SPOOL_TX_ACCEPTED; /* provisional: undone below on failure */
	}
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
			st->cfg->log(st->cfg->log_ctx, SPOOL_TX_LOG_ERR, "%s: cannot truncate back: %s",
				     st->cfg->file_path, strerror(errno));
		for (size_t i = 0; i < b->count; i++)
			if (out[i].result == SPOOL_TX_ACCEPTED)
				out[i].result = SPOOL_TX_RETRY;
		call->call = SPOOL_TXC_TRANSIENT;
		snprintf(call->message, sizeof(call->message), "%s: %s", st->cfg->file_path, strerror(err));
	}
	return 0;
}

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "file",
	.description = "append JSON lines to file.path; acknowledged once fdatasync'ed",
	.create = file_create,
	.destroy = file_destroy,
	.send = file_send,
};
