/* spoolctl_xfer.c — export and import: carrying a spool's pending events
 * home on a disk, in one self-describing, checksummed file
 * (docs/spoolctl.md describes the format). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/json.h"
#include <spool/spool.h>

#include "spoolctl.h"

#define XF_HEAD_MAGIC "MLSPOOLX"
#define XF_TAIL_MAGIC "MLSPTAIL"
#define XF_VERSION    1
#define XF_REC_FIXED  21
#define XF_MAX_EVENT  ((uint32_t)256 << 20)

static void le_put(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_get(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

struct writer {
	int fd;
	int err; /* first errno */
	size_t used;
	unsigned char buf[1 << 16];
};

static void wr_flush(struct writer *w)
{
	size_t off = 0;
	while (!w->err && off < w->used) {
		ssize_t n = write(w->fd, w->buf + off, w->used - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			w->err = n < 0 ? errno : EIO;
		else
			off += (size_t)n;
	}
	w->used = 0;
}

static void wr_put(struct writer *w, const void *p, size_t n)
{
	const unsigned char *c = p;
	while (n > 0 && !w->err) {
		if (w->used == sizeof(w->buf))
			wr_flush(w);
		size_t k = sizeof(w->buf) - w->used < n ? sizeof(w->buf) - w->used : n;
		memcpy(w->buf + w->used, c, k);
		w->used += k;
		c += k;
		n -= k;
	}
}

static int fsync_parent(const char *file)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", file);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

const char EXPORT_HELP[] =
    "Usage: spoolctl [--spool DIR] export FILE [--delete]\n\n"
    "Writes the events pending now, oldest first, to FILE: a header (format,\n"
    "source host and spool, count), the records (seq, severity, enqueue time,\n"
    "the event's msgpack bytes) and a trailer with the count and a CRC-32 over\n"
    "everything.  Written to FILE.tmp, synced, renamed to FILE, directory synced.\n"
    "With --delete the exported events are then removed from the spool (as\n"
    "acknowledged), only after FILE is complete and on disk.  Carry FILE to\n"
    "another machine and `spoolctl import` it there.\n"
    "Exit status: 0; 1 on failure (FILE is then not created); 2 for a usage error.\n";

static int export_records(struct spool *s, struct writer *w, uint64_t limit, uint64_t **seqs,
                          uint64_t *count)
{
	uint64_t after = 0, cap = 0;
	*count = 0;
	for (;;) {
		struct spool_batch *b;
		int rc = spool_read_batch(s, after, CHUNK, (size_t)16 << 20, &b);
		if (rc)
			return rc;
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		bool end = n == 0;
		for (size_t i = 0; i < n && !w->err; i++) {
			if (r[i].seq >= limit || r[i].len > XF_MAX_EVENT) {
				end = r[i].seq >= limit;
				if (!end) {
					spool_batch_release(b);
					return -EFBIG;
				}
				break;
			}
			after = r[i].seq;
			unsigned char h[4 + XF_REC_FIXED];
			le_put(h, r[i].len, 4);
			le_put(h + 4, r[i].seq, 8);
			h[12] = (unsigned char)r[i].severity;
			le_put(h + 13, (uint64_t)r[i].enqueue_us, 8);
			wr_put(w, h, sizeof(h));
			wr_put(w, r[i].data, r[i].len);
			if (seqs) {
				if (*count == cap) {
					cap = cap ? cap * 2 : 4096;
					uint64_t *g = realloc(*seqs, cap * sizeof(*g));
					if (!g) {
						spool_batch_release(b);
						return -ENOMEM;
					}
					*seqs = g;
				}
				(*seqs)[*count] = r[i].seq;
			}
			(*count)++;
		}
		spool_batch_release(b);
		if (w->err)
			return -w->err;
		if (end)
			return 0;
	}
}

/* CRC-32 of the first `len` bytes of fd. */
static int crc_of_file(int fd, uint64_t len, uint32_t *crc)
{
	unsigned char buf[1 << 16];
	uint64_t off = 0;
	*crc = 0;
	while (off < len) {
		size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		*crc = spool_crc32(*crc, buf, (size_t)n);
		off += (uint64_t)n;
	}
	return 0;
}

int run_export(int argc, char **argv, const char *dir)
{
	const char *file = NULL;
	bool del = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--delete") == 0) {
			del = true;
		} else if (argv[i][0] != '-' && !file) {
			file = argv[i];
		} else {
			fprintf(stderr, "spoolctl: export: bad argument '%s'\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (!file) {
		fprintf(stderr, "spoolctl: export: no FILE given\n");
		return EXIT_USAGE;
	}
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", file) >= (int)sizeof(tmp)) {
		fprintf(stderr, "spoolctl: export: file name too long\n");
		return EXIT_USAGE;
	}
	struct spool *s = open_spool(dir, false);
	if (!s)
		return EXIT_FAIL;
	struct writer *w = calloc(1, sizeof(*w));
	uint64_t *seqs = NULL, count = 0;
	const char *what = "";
	int rc = 0;
	struct spool_stats st;
	char host[256] = "", path[PATH_MAX];
	if (!w) {
		rc = -ENOMEM;
		goto fail_closed;
	}
	if ((rc = spool_stats(s, &st)) != 0) {
		what = "cannot read the spool";
		goto fail_closed;
	}
	w->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		rc = -errno;
		what = tmp;
		goto fail_closed;
	}
	gethostname(host, sizeof(host) - 1);
	if (!realpath(dir, path))
		snprintf(path, sizeof(path), "%s", dir);
	size_t hl = strlen(host) & 0xffff, pl = strlen(path) & 0xffff;
	unsigned char h[34];
	memcpy(h, XF_HEAD_MAGIC, 8);
	le_put(h + 8, XF_VERSION, 4);
	le_put(h + 12, 8 + 4 + 4 + 8 + 8 + 2 + hl + 2 + pl, 4);
	le_put(h + 16, 0, 8); /* the count, written once known */
	le_put(h + 24, (uint64_t)now_us(), 8);
	le_put(h + 32, hl, 2);
	wr_put(w, h, 34);
	wr_put(w, host, hl);
	le_put(h, pl, 2);
	wr_put(w, h, 2);
	wr_put(w, path, pl);
	rc = export_records(s, w, st.next_seq, del ? &seqs : NULL, &count);
	what = "cannot write the records";
	if (rc)
		goto fail;
	wr_flush(w);
	off_t end = lseek(w->fd, 0, SEEK_END);
	le_put(h, count, 8);
	if (w->err || end < 0 || pwrite(w->fd, h, 8, 16) != 8) {
		rc = -(w->err ? w->err : errno ? errno : EIO);
		goto fail;
	}
	/* the checksum covers the file as it is on disk */
	unsigned char t[20];
	memcpy(t, XF_TAIL_MAGIC, 8);
	le_put(t + 8, count, 8);
	uint32_t crc;
	if ((rc = crc_of_file(w->fd, (uint64_t)end, &crc)) != 0)
		goto fail;
	le_put(t + 16, spool_crc32(crc, t, 16), 4);
	wr_put(w, t, sizeof(t));
	wr_flush(w);
	what = "cannot sync the file";
	if (w->err || fsync(w->fd) != 0) {
		rc = -(w->err ? w->err : errno);
		goto fail;
	}
	close(w->fd);
	w->fd = -1;
	if (rename(tmp, file) != 0 || fsync_parent(file) != 0) {
		rc = -errno;
		what = "cannot put the file in place";
		goto fail;
	}
	printf("exported %" PRIu64 " events to %s\n", count, file);
	int status = 0;
	if (del && count) {
		uint64_t gone = 0;
		for (uint64_t i = 0; i < count && rc == 0; i += CHUNK) {
			uint64_t d = 0;
			size_t n = count - i < CHUNK ? (size_t)(count - i) : CHUNK;
			rc = spool_ack(s, seqs + i, n, &d);
			gone += d;
		}
		if (rc) {
			fprintf(
			    stderr,
			    "spoolctl: export: %s is complete, but deleting the events from the "
			    "spool failed after %" PRIu64 ": %s\n",
			    file, gone, spool_strerror(rc));
			status = EXIT_FAIL;
		} else {
			printf("deleted %" PRIu64 " exported events from the spool\n", gone);
		}
	}
	free(seqs);
	free(w);
	spool_close(s);
	return status;
fail:
	if (w->fd >= 0)
		close(w->fd);
	unlink(tmp);
fail_closed:
	fprintf(stderr, "spoolctl: export %s: %s%s%s\n", file, what, what[0] ? ": " : "",
	        spool_strerror(rc));
	free(seqs);
	free(w);
	spool_close(s);
	return EXIT_FAIL;
}

struct reader {
	FILE *f;
	uint64_t off;
	uint64_t size;
	uint32_t crc;
};

static int rd_get(struct reader *r, void *p, size_t n)
{
	if (n > r->size - r->off || fread(p, 1, n, r->f) != n)
		return -1;
	r->crc = spool_crc32(r->crc, p, n);
	r->off += n;
	return 0;
}

struct xf_header {
	uint64_t count;
	uint32_t len;
	int64_t created_us;
	char host[256];
	char path[PATH_MAX];
};

/* Reads and checks the header; NULL, or what is wrong. */
static const char *xf_read_header(struct reader *r, struct xf_header *h)
{
	unsigned char b[34];
	if (rd_get(r, b, 34) != 0)
		return "too short for an export file header";
	if (memcmp(b, XF_HEAD_MAGIC, 8) != 0)
		return "not a spoolctl export file (bad magic)";
	if (le_get(b + 8, 4) != XF_VERSION)
		return "export format version not supported by this spoolctl";
	h->len = (uint32_t)le_get(b + 12, 4);
	h->count = le_get(b + 16, 8);
	h->created_us = (int64_t)le_get(b + 24, 8);
	size_t hl = (size_t)le_get(b + 32, 2);
	unsigned char tmp[PATH_MAX + 2];
	if (hl >= sizeof(h->host) || rd_get(r, tmp, hl + 2) != 0)
		return "header truncated or damaged";
	memcpy(h->host, tmp, hl);
	h->host[hl] = '\0';
	size_t pl = (size_t)le_get(tmp + hl, 2);
	if (pl >= sizeof(h->path) || rd_get(r, tmp, pl) != 0)
		return "header truncated or damaged";
	memcpy(h->path, tmp, pl);
	h->path[pl] = '\0';
	if (h->len != r->off)
		return "header length field does not match the header";
	return NULL;
}

/* Reads one record into *buf (grown as needed); NULL, or what is wrong. */
static const char *xf_read_record(struct reader *r, struct spool_buf *buf, uint64_t *seq, int *sev)
{
	unsigned char h[4 + XF_REC_FIXED];
	if (rd_get(r, h, sizeof(h)) != 0)
		return "file truncated inside a record";
	uint64_t len = le_get(h, 4);
	*seq = le_get(h + 4, 8);
	*sev = h[12];
	if (len == 0 || len > XF_MAX_EVENT || len > r->size - r->off)
		return "record length out of range (file damaged or truncated)";
	if (*sev > SPOOL_SEV_FATAL)
		return "record has an invalid severity";
	buf->len = 0;
	if (spool_buf_reserve(buf, (size_t)len) != 0)
		return "out of memory";
	if (rd_get(r, buf->data, (size_t)len) != 0)
		return "file truncated inside a record";
	buf->len = (size_t)len;
	return NULL;
}

const char IMPORT_HELP[] =
    "Usage: spoolctl [--spool DIR] import FILE\n\n"
    "Checks all of FILE (an export: magic, version, lengths, every event a\n"
    "msgpack map, count and CRC-32) before appending anything; then appends\n"
    "its events in order, each with its msgpack bytes unchanged (so their\n"
    "client_event_id and timestamp are kept, and the server drops those it\n"
    "already has if a file is imported twice).  They get new sequence numbers\n"
    "and enqueue times in this spool.  The spool is created if it does not exist.\n"
    "Exit status: 0; 1 when FILE is refused (nothing imported) or appending\n"
    "fails; 2 for a usage error.\n";

/* The first pass: the whole file is sound.  NULL, or what is wrong. */
static const char *xf_check(struct reader *r, struct xf_header *h, struct spool_buf *buf)
{
	const char *bad = xf_read_header(r, h);
	if (bad)
		return bad;
	struct spool_buf json = {0};
	for (uint64_t i = 0; i < h->count && !bad; i++) {
		uint64_t seq;
		int sev;
		bad = xf_read_record(r, buf, &seq, &sev);
		json.len = 0;
		if (!bad && spool_event_to_json(buf->data, buf->len, NULL, &json) != 0)
			bad = "a record's event is not a msgpack map";
	}
	spool_buf_free(&json);
	if (bad)
		return bad;
	uint32_t crc = r->crc;
	unsigned char t[20];
	if (rd_get(r, t, sizeof(t)) != 0)
		return "file truncated: the trailer is missing";
	if (memcmp(t, XF_TAIL_MAGIC, 8) != 0)
		return "trailer not found where the header's count says (file damaged)";
	if (le_get(t + 8, 8) != h->count)
		return "trailer count differs from the header's";
	crc = spool_crc32(crc, t, 16);
	if (le_get(t + 16, 4) != crc)
		return "checksum mismatch: the file was altered or damaged";
	if (r->off != r->size)
		return "bytes after the trailer";
	return NULL;
}

static int import_append(struct spool *s, struct reader *r, const struct xf_header *h,
                         uint64_t *done)
{
	struct spool_input *in = calloc(CHUNK, sizeof(*in));
	struct spool_buf *bufs = calloc(CHUNK, sizeof(*bufs));
	int rc = in && bufs ? 0 : -ENOMEM;
	*done = 0;
	for (uint64_t i = 0; i < h->count && rc == 0;) {
		size_t n = 0, bytes = 0;
		while (i < h->count && n < CHUNK && bytes < ((size_t)16 << 20)) {
			uint64_t seq;
			int sev;
			if (xf_read_record(r, &bufs[n], &seq, &sev) != NULL) {
				rc = -EIO; /* changed since it was checked */
				break;
			}
			in[n] = (struct spool_input){sev, bufs[n].data, bufs[n].len};
			bytes += bufs[n].len;
			n++;
			i++;
		}
		if (rc == 0)
			rc = spool_append_many(s, in, n);
		if (rc == 0)
			*done += n;
	}
	if (bufs)
		for (size_t i = 0; i < CHUNK; i++)
			spool_buf_free(&bufs[i]);
	free(bufs);
	free(in);
	return rc;
}

int run_import(int argc, char **argv, const char *dir)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "spoolctl: import: give exactly one FILE\n");
		return EXIT_USAGE;
	}
	const char *file = argv[1];
	struct reader r = {0};
	struct stat st;
	r.f = fopen(file, "rb");
	if (!r.f || fstat(fileno(r.f), &st) != 0) {
		fprintf(stderr, "spoolctl: import: %s: %s\n", file, strerror(errno));
		if (r.f)
			fclose(r.f);
		return EXIT_FAIL;
	}
	r.size = (uint64_t)st.st_size;
	struct xf_header *h = calloc(1, sizeof(*h));
	struct spool_buf buf = {0};
	const char *bad = h ? xf_check(&r, h, &buf) : "out of memory";
	spool_buf_free(&buf);
	if (bad) {
		fprintf(stderr,
		        "spoolctl: import: %s refused at byte %" PRIu64 ": %s; nothing imported\n",
		        file, r.off, bad);
		fclose(r.f);
		free(h);
		return EXIT_FAIL;
	}
	struct spool *s = open_spool(dir, true);
	if (!s) {
		fclose(r.f);
		free(h);
		return EXIT_FAIL;
	}
	uint64_t done = 0;
	int rc = fseek(r.f, (long)h->len, SEEK_SET) == 0 ? 0 : -errno;
	r.off = h->len;
	if (rc == 0)
		rc = import_append(s, &r, h, &done);
	spool_close(s);
	fclose(r.f);
	if (rc) {
		fprintf(stderr,
		        "spoolctl: import: %s: appending failed after %" PRIu64 " of %" PRIu64
		        " events: %s\n",
		        file, done, h->count, spool_strerror(rc));
		free(h);
		return EXIT_FAIL;
	}
	char when[48];
	fmt_time(h->created_us, when, sizeof(when));
	printf("imported %" PRIu64 " events from %s (exported %s from %s:%s)\n", done, file, when,
	       h->host, h->path);
	free(h);
	return 0;
}

/* ---- main ---- */

