#include <stdio.h>

#include <spool/mlog.h>

int main(void)
{
	/* MASTER_LOG_ENDPOINT and MASTER_LOG_API_KEY come from the environment */
	mlog("Telescope array online");
	mlog_ex(&(struct mlog_opts){.severity = MLOG_WARN,
				    .tags = (const char *[]){"dome", "weather", NULL}},
		"Dome slit wind threshold approaching: %d km/h", 52);
	mlog_ex(&(struct mlog_opts){
			.title = "Temporary satellite glint alert",
			.ttl_seconds = 120,
			.metadata_json = "{\"target\": \"M13\", \"duration_seconds\": 18}",
		},
		"Short-lived satellite glint crossed the exposure path.");

	struct mlog_result r = mlog_flush(10);
	if (!r.ok)
		fprintf(stderr, "Master Log flush failed: %s\n", r.error);
	return r.ok ? 0 : 1;
}
