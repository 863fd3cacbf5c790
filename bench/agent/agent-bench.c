/* agent-bench — spool-agent's drain rate: a spool pre-filled with N events
 * (default 1,000,000) drained by `spool-agent --once` into mlog-receiver over
 * 127.0.0.1, at batch sizes 100 and 1,000, with and without gzip.  Prints one
 * JSON object: per case events/s and the agent's own CPU seconds per million
 * events (from wait4()), beside the machine's limit measured in the same run
 * (raw fdatasync latency: the agent commits one synced delete per batch),
 * and the storage floor of the same spool: raw LMDB reading every record
 * once (its bytes checksummed, as the agent checks them) and deleting it,
 * in synced transactions of 1,000 records, in a child process whose CPU is
 * counted the same way ("store_floor"; each case's "ratio_to_store_floor"
 * is its CPU over that floor's: what the agent adds to the storage's own
 * work).  Each drain starts from a copy of the template written out to the
 * disk first (spool_copy()).
 * Also the encoder alone ("encode": CPU ns per event to turn a stored event
 * into its JSON, as the agent does, beside copying the same JSON bytes).
 *
 * agent-bench [--events N] [--quick] [--receiver PATH] [--agent PATH]
 *             [--dir TMPDIR]
 * --fill-only DIR (after --events) fills DIR and exits, for profiling by hand.
 * Defaults come from $MLOG_RECEIVER and $SPOOL_AGENT (the HTTP transports
 * are built into the agent). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libdeflate.h>
#include <lmdb.h>
#include <inttypes.h>
#include <msgpack.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <spool/spool.h>

#include "codec/json.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "agent-bench: %s\n", what);
	exit(1);
}

/* A typical event: ~330 bytes of msgpack, ~400 of JSON. */
static void pack_event(msgpack_sbuffer *sb, uint64_t n)
{
	static const char alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	msgpack_packer pk;
	msgpack_sbuffer_clear(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	char id[27], msg[160];
	id[0] = '0';
	uint64_t a = 0x5eed5eed5eedull + (uint64_t)getpid(), b = n;
	for (int i = 1; i <= 12; i++, a >>= 5)
		id[i] = alpha[a & 31];
	for (int i = 25; i >= 13; i--, b >>= 5)
		id[i] = alpha[b & 31];
	id[26] = '\0';
	int ml = snprintf(msg, sizeof(msg),
			  "request %" PRIu64 " served in 12.5 ms: GET /api/telescope/status?dome=1 200 OK", n);
#define S(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
	msgpack_pack_map(&pk, 6);
	S("message");
	msgpack_pack_str_with_body(&pk, msg, (size_t)ml);
	S("severity");
	S("info");
	S("tags");
	msgpack_pack_array(&pk, 2);
	S("bench");
	S("agent");
	S("client_event_id");
	S(id);
	S("timestamp");
	S("2026-11-24T14:29:21.123456Z");
	S("metadata");
	msgpack_pack_map(&pk, 2);
	S("n");
	msgpack_pack_uint64(&pk, n);
	S("c_client");
	msgpack_pack_map(&pk, 4);
	S("hostname");
	S("bench-host");
	S("pid");
	msgpack_pack_int(&pk, 4242);
	S("process_name");
	S("agent-bench");
	S("library_version");
	S(SPOOL_VERSION_STRING);
#undef S
}

static void fill(const char *dir, uint64_t n)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	o.max_bytes = (uint64_t)64 << 30;
	struct spool *s;
	char err[512];
	if (spool_open(dir, &o, &s, err, sizeof(err)))
		die(err);
	enum { CHUNK = 2000 };
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct spool_input *in = calloc(CHUNK, sizeof(*in));
	char *arena = malloc((size_t)CHUNK * 512);
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
		for (size_t i = 0; i < k; i++) {
			pack_event(&sb, done + i + 1);
			if (sb.size > 512)
				die("event too big");
			memcpy(arena + i * 512, sb.data, sb.size);
			in[i] = (struct spool_input){SPOOL_SEV_INFO, arena + i * 512, sb.size};
		}
		int rc = spool_append_many(s, in, k);
		if (rc)
			die(spool_strerror(rc));
		done += k;
	}
	free(in);
	free(arena);
	msgpack_sbuffer_destroy(&sb);
	spool_close(s);
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The encoder alone, as the agent calls it (spool_seq added, the c_client
 * memo on, a batch of 1,000 into one reused buffer), over k of the bench's
 * events packed in memory; beside its limit in the same run: copying the
 * same JSON bytes into a batch buffer.  Best of three passes each, CPU
 * nanoseconds per event. */
struct enc_figures {
	uint64_t events;
	double json_bytes, enc_ns, copy_ns;
};

static struct enc_figures encode_figures(uint64_t k)
{
	enum { BATCH = 1000, SLOT = 512 };
	struct enc_figures f = {.events = k, .enc_ns = 1e30, .copy_ns = 1e30};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	unsigned char *mp = malloc((size_t)k * SLOT);
	size_t *mlen = calloc(k, sizeof(*mlen)), *joff = calloc(k + 1, sizeof(*joff));
	if (!mp || !mlen || !joff)
		die("out of memory");
	for (uint64_t i = 0; i < k; i++) {
		pack_event(&sb, i + 1);
		if (sb.size > SLOT)
			die("event too big");
		memcpy(mp + i * SLOT, sb.data, sb.size);
		mlen[i] = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	struct spool_buf out = {0}, all = {0};
	struct spool_json_memo memo = {0};
	for (int pass = 0; pass < 3; pass++) {
		double t0 = cpu_now();
		for (uint64_t i = 0; i < k; i++) {
			if (i % BATCH == 0)
				out.len = 0;
			struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = i + 1, .memo = &memo};
			const char *id;
			size_t idl, at = out.len;
			if (spool_event_to_json_find(mp + i * SLOT, mlen[i], &x, &out, "client_event_id", &id,
						     &idl) != 0)
				die("the encoder refused a bench event");
			if (pass == 0) {
				/* pass 0 keeps each event's JSON for the copy
				 * below, and is not counted */
				if (spool_buf_append(&all, out.data + at, out.len - at))
					die("out of memory");
				joff[i + 1] = all.len;
			}
		}
		double e = (cpu_now() - t0) / (double)k * 1e9;
		if (pass > 0 && e < f.enc_ns)
			f.enc_ns = e;
	}
	for (int pass = 0; pass < 3; pass++) {
		double t0 = cpu_now();
		for (uint64_t i = 0; i < k; i++) {
			if (i % BATCH == 0)
				out.len = 0;
			if (spool_buf_append(&out, all.data + joff[i], joff[i + 1] - joff[i]))
				die("out of memory");
		}
		double c = (cpu_now() - t0) / (double)k * 1e9;
		if (c < f.copy_ns)
			f.copy_ns = c;
	}
	f.json_bytes = (double)all.len / (double)k;
	spool_buf_free(&out);
	spool_buf_free(&all);
	free(mp);
	free(mlen);
	free(joff);
	return f;
}

static int run(const char *const *argv, struct rusage *ru)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		if (!getenv("AGENT_BENCH_VERBOSE"))
			dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	struct rusage r;
	if (wait4(pid, &st, 0, ru ? ru : &r) != pid)
		die("wait4");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The storage floor (see the top): CPU seconds to read and delete every
 * record of the spool in dir with raw LMDB, `batch` records per synced
 * transaction, in a child process.  Negative when it could not run or did
 * not find the n records. */
static double store_floor(const char *dir, int batch, uint64_t n)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi dbi;
		uint32_t sum = 0;
		uint64_t gone = 0;
		if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
		    mdb_env_set_mapsize(env, (size_t)64 << 30) || mdb_env_open(env, dir, MDB_NOTLS, 0600))
			_exit(2);
		if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "events", 0, &dbi) ||
		    mdb_txn_commit(txn))
			_exit(3);
		for (int done = batch; done > 0;) {
			MDB_cursor *cur;
			if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_cursor_open(txn, dbi, &cur))
				_exit(4);
			MDB_val k, v;
			int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
			for (done = 0; done < batch && rc == 0; done++) {
				sum = libdeflate_crc32(sum, v.mv_data, v.mv_size);
				if (mdb_cursor_del(cur, 0))
					_exit(5);
				rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			}
			gone += (uint64_t)done;
			mdb_cursor_close(cur);
			if (mdb_txn_commit(txn))
				_exit(6);
		}
		mdb_env_close(env);
		if (gone != n)
			_exit(7);
		_exit(sum == 1 ? 8 : 0); /* the sum is used, so the reads stay */
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) != pid)
		die("wait4");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

struct rx {
	pid_t pid;
	int port;
};

static void rx_start(struct rx *rx, const char *exe, const char *tmp)
{
	char portfile[600];
	snprintf(portfile, sizeof(portfile), "%s/rx.port", tmp);
	unlink(portfile);
	rx->pid = fork();
	if (rx->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		execl(exe, exe, "--listen", "127.0.0.1", "--port", "0", "--port-file", portfile, (char *)NULL);
		_exit(127);
	}
	FILE *f = NULL;
	for (int i = 0; i < 2000 && !(f = fopen(portfile, "r")); i++)
		usleep(5000);
	if (!f || fscanf(f, "%d", &rx->port) != 1)
		die("mlog-receiver did not start");
	fclose(f);
}

static void rx_stop(struct rx *rx)
{
	kill(rx->pid, SIGTERM);
	waitpid(rx->pid, NULL, 0);
}

/* A fresh copy of the template spool at spool, written out to the disk: a
 * copy's pages still dirty in the page cache would be written by the first
 * fdatasync of whoever drains it, and charged to that process, which the
 * spool a producer committed never asks. */
static void spool_copy(const char *tmpl, const char *spool)
{
	const char *rm[] = {"/bin/rm", "-rf", spool, NULL};
	run(rm, NULL);
	const char *cp[] = {"/bin/cp", "-a", tmpl, spool, NULL};
	if (run(cp, NULL))
		die("cp of the template spool failed");
	char data[600];
	snprintf(data, sizeof(data), "%s/data.mdb", spool);
	const char *sy[] = {"/bin/sync", data, NULL};
	if (run(sy, NULL))
		die("sync of the copied spool failed");
}

/* Raw fdatasync latency of a 4 KiB overwrite in dir, median of 50. */
static double fsync_latency(const char *dir)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/fsync.probe", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("fsync probe");
	char buf[4096];
	memset(buf, 'x', sizeof(buf));
	double t[50];
	for (int i = 0; i < 50; i++) {
		double t0 = now();
		if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || fdatasync(fd))
			die("fsync probe write");
		t[i] = now() - t0;
	}
	close(fd);
	unlink(path);
	for (int i = 1; i < 50; i++)
		for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
			double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return t[25];
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"events", required_argument, NULL, 'n'}, {"quick", no_argument, NULL, 'q'},
		{"receiver", required_argument, NULL, 'r'}, {"agent", required_argument, NULL, 'a'},
		{"dir", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
		{"fill-only", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	uint64_t n = 1000000;
	const char *rx_exe = getenv("MLOG_RECEIVER"), *agent = getenv("SPOOL_AGENT");
	const char *base = "/tmp";
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 'q':
			n = 50000;
			break;
		case 'r':
			rx_exe = optarg;
			break;
		case 'a':
			agent = optarg;
			break;
		case 'd':
			base = optarg;
			break;
		case 'j':
			break; /* JSON is the only output */
		case 'f': /* fill a spool for profiling by hand, then exit */
			fill(optarg, n);
			return 0;
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: agent-bench [--events N] [--quick] [--receiver PATH] [--agent PATH] "
				"[--dir TMPDIR]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (!rx_exe || !agent || n == 0)
		die("need --receiver and --agent (or MLOG_RECEIVER, SPOOL_AGENT)");
	/* absolute paths: the children run elsewhere */
	static char rx_abs[PATH_MAX], agent_abs[PATH_MAX];
	if (!realpath(rx_exe, rx_abs) || !realpath(agent, agent_abs))
		die("--receiver or --agent names no file");
	rx_exe = rx_abs;
	agent = agent_abs;

	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s/agent-bench-XXXXXX", base);
	if (!mkdtemp(tmp))
		die("mkdtemp");
	char tmpl[600], spool[600], conf[600];
	snprintf(tmpl, sizeof(tmpl), "%s/template", tmp);
	snprintf(spool, sizeof(spool), "%s/spool", tmp);
	snprintf(conf, sizeof(conf), "%s/agent.yaml", tmp);
	double fs = fsync_latency(tmp);
	/* what starting spool-agent costs before it drains anything (loading
	 * libcurl and the other libraries it links): the least of five runs
	 * of --version, a fixed cost each case below pays once */
	double start_cpu = -1;
	for (int i = 0; i < 5; i++) {
		const char *av[] = {agent, "--version", NULL};
		struct rusage ru;
		if (run(av, &ru) != 0)
			die("spool-agent --version failed");
		double used = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
		if (start_cpu < 0 || used < start_cpu)
			start_cpu = used;
	}
	double t0 = now();
	fill(tmpl, n);
	double fill_s = now() - t0;

	static const struct {
		int batch;
		int gzip;
	} cases[] = {{100, 0}, {1000, 0}, {100, 1}, {1000, 1}};
	struct enc_figures ef = encode_figures(n < 100000 ? n : 100000);
	/* the storage floor, on a copy of the same spool: 1,000 records per
	 * synced transaction (the agent groups the deletes of the batches
	 * answered together, so its transactions are as large or larger) */
	enum { FLOOR_BATCH = 1000 };
	spool_copy(tmpl, spool);
	double floor_cpu = store_floor(spool, FLOOR_BATCH, n);
	if (floor_cpu < 0)
		die("the storage floor pass failed (raw LMDB read and delete)");
	printf("{\"bench\":\"agent-drain\",\"events\":%" PRIu64 ",\"fill_seconds\":%.3f,"
	       "\"fdatasync_seconds\":%.6f,\"agent_start_cpu_seconds\":%.4f,"
	       "\"encode\":{\"events\":%" PRIu64 ",\"json_bytes_per_event\":%.0f,\"ns_per_event\":%.1f,"
	       "\"memcpy_ns_per_event\":%.1f,\"ratio_to_memcpy\":%.2f},"
	       "\"store_floor\":{\"records_per_transaction\":%d,\"cpu_seconds_per_million\":%.3f},"
	       "\"cases\":[",
	       n, fill_s, fs, start_cpu, ef.events, ef.json_bytes, ef.enc_ns, ef.copy_ns, ef.enc_ns / ef.copy_ns,
	       (int)FLOOR_BATCH, floor_cpu / (double)n * 1e6);
	int failed = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		spool_copy(tmpl, spool);
		struct rx rx;
		rx_start(&rx, rx_exe, tmp);
		FILE *f = fopen(conf, "w");
		fprintf(f,
			"spool: %s\nhttp:\n  endpoint: http://127.0.0.1:%d\n  gzip: %s\nbatch_size: %d\n"
			"log:\n  level: warning\n",
			spool, rx.port, cases[i].gzip ? "true" : "false", cases[i].batch);
		fclose(f);
		const char *av[] = {agent, "-c", conf, "--once", NULL};
		struct rusage ru;
		double s0 = now();
		int rc = run(av, &ru);
		double secs = now() - s0;
		rx_stop(&rx);
		double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
		double eps = (double)n / secs;
		/* the agent's own limit here: one synced delete per batch costs
		 * about two fdatasyncs (LMDB syncs data, then meta) */
		double sync_bound = (double)cases[i].batch / (2 * fs);
		if (rc != 0) {
			/* no figures from a run that did not drain the spool */
			printf("%s{\"batch_size\":%d,\"gzip\":%s,\"exit\":%d,\"error\":\"spool-agent "
			       "--once exited with %d\",\"events_per_sec\":null}",
			       i ? "," : "", cases[i].batch, cases[i].gzip ? "true" : "false", rc, rc);
			fflush(stdout);
			failed = 1;
			continue;
		}
		printf("%s{\"batch_size\":%d,\"gzip\":%s,\"exit\":%d,\"seconds\":%.3f,\"events_per_sec\":%.0f,"
		       "\"agent_cpu_seconds\":%.3f,\"agent_cpu_seconds_per_million\":%.3f,"
		       "\"after_start_cpu_seconds_per_million\":%.3f,\"agent_minor_faults\":%ld,"
		       "\"fsync_bound_events_per_sec\":%.0f,\"ratio_to_fsync_bound\":%.3f,"
		       "\"ratio_to_store_floor\":%.2f}",
		       i ? "," : "", cases[i].batch, cases[i].gzip ? "true" : "false", rc, secs, eps, cpu,
		       cpu / (double)n * 1e6, (cpu - start_cpu) / (double)n * 1e6, ru.ru_minflt,
		       sync_bound, eps / sync_bound, cpu / floor_cpu);
		fflush(stdout);
		failed |= rc != 0;
	}
	printf("]}\n");
	const char *rm[] = {"/bin/rm", "-rf", tmp, NULL};
	run(rm, NULL);
	return failed;
}
