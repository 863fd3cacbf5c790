/* spoolctl.h — what the parts of spoolctl share. */
#ifndef SPOOLCTL_H
#define SPOOLCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <spool/spool.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define CHUNK 1024 /* records per read or delete */

void fmt_time(int64_t us, char *buf, size_t len);
int64_t now_us(void);
struct spool *open_spool(const char *dir, bool create);

/* spoolctl_xfer.c: export and import */
extern const char EXPORT_HELP[];
extern const char IMPORT_HELP[];
int run_export(int argc, char **argv, const char *dir);
int run_import(int argc, char **argv, const char *dir);

#endif
