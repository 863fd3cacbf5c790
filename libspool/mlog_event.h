/* mlog_event.h — see mlog_event.c. */
#ifndef SPOOL_MLOG_EVENT_H
#define SPOOL_MLOG_EVENT_H

#include <stddef.h>

#include <spool/json.h>

/* The host's canonical name once the resolver thread (started by the first
 * call) has it; NULL until then or when it does not resolve. */
const char *mlog_fqdn(void);

/* Appends the members of the JSON object `text` to *out as msgpack
 * key/value pairs (*count of them): objects to maps, arrays to arrays,
 * integers to int, reals to float64, true/false/null to bool/nil.  0, or
 * -EINVAL with a sentence in err. */
int mlog_metadata_from_json(const char *text, struct spool_buf *out, size_t *count, char *err,
                            size_t errlen);

#endif
