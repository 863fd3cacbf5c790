/* fuzz_config.c — spool-agent's YAML configuration loader, config_load()
 * (agent/config.h).
 *
 * config_load() takes a file path, so each input is written to a memfd and
 * loaded through /proc/self/fd/N.  The MASTER_LOG_* variables are cleared
 * first so only the file counts.  Aborts when a load that succeeded leaves
 * a required field unset or out of its range, or when a failed load leaves
 * no message.  ASan's leak check covers config_free(). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

static void fail(const char *what, const char *err)
{
	fprintf(stderr, "fuzz_config: %s (%s)\n", what, err ? err : "");
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const vars[] = {
		"MASTER_LOG_SPOOL_DIR", "MASTER_LOG_ENDPOINT", "MASTER_LOG_API_KEY",
		"MASTER_LOG_BATCH_SIZE", "MASTER_LOG_FLUSH_INTERVAL_SECONDS",
		"MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	/* an api_key_file naming /dev/stdin must not block the fuzzer */
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0) {
		dup2(nul, 0);
		close(nul);
	}
	memfd = memfd_create("fuzz-config.yaml", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	struct agent_config cfg;
	char err[512] = "";
	int rc = config_load(path, NULL, &cfg, err, sizeof(err));
	if (rc == 0) {
		if (!cfg.spool || !cfg.log_level || !cfg.log_target || !cfg.transports ||
		    cfg.ntransports < 1 || cfg.ntransports > AGENT_MAX_TRANSPORTS)
			fail("loaded without a required field", NULL);
		if (cfg.endpoint && !cfg.endpoint_root)
			fail("endpoint without its normalised root", cfg.endpoint);
		if (cfg.batch_size < 1 || cfg.batch_size > 100000 || cfg.max_batch_bytes < 1024 ||
		    !(cfg.retry_max >= cfg.retry_initial) || !(cfg.retry_multiplier >= 1))
			fail("loaded a value out of its range", NULL);
		if (config_log_level(cfg.log_level) < 0)
			fail("loaded a bad log level", cfg.log_level);
		for (size_t i = 0; i < cfg.nheaders; i++)
			if (!cfg.headers[i].name || !cfg.headers[i].value)
				fail("header without name or value", NULL);
		char red[64];
		config_redact_key(cfg.api_key, red, sizeof(red));
		config_free(&cfg);
	} else if (rc == -1) {
		if (!err[0])
			fail("failed without a message", NULL);
	} else {
		fail("config_load returned neither 0 nor -1", err);
	}
	return 0;
}
