/* mlog_event.h — see mlog_event.c. */
#ifndef SPOOL_MLOG_EVENT_H
#define SPOOL_MLOG_EVENT_H

#include <stddef.h>

#include "codec/event.h"
#include "codec/json.h"
#include <spool/mlog.h>

/* The host's canonical name once the resolver thread (started by the first
 * call) has it; NULL until then or when it does not resolve. */
const char *mlog_fqdn(void);

/* Appends the members of the JSON object `text` to *out as msgpack
 * key/value pairs (*count of them): objects to maps, arrays to arrays,
 * integers to int, reals to float64, true/false/null to bool/nil.  Refuses
 * (-EINVAL, a sentence in err) what is not a JSON object, duplicate keys,
 * a key also among the ntyped typed values, the reserved keys c_client and
 * delivery, and nesting deeper than MLOG_METADATA_MAX_DEPTH. */
/* The public typed values (mlog.h) as the codec's (codec/event.h): the
 * same fields, converted one by one. */
void mlog_kv_to_spool(const struct mlog_kv *in, size_t n, struct spool_kv *out);

int mlog_metadata_from_json(const char *text, const struct spool_kv *typed, size_t ntyped,
                            struct spool_buf *out, size_t *count, char *err, size_t errlen);

/* The same, refusing also the key `block` (may be NULL): the name of the
 * client's own block (mlog_client_set_block). */
int mlog_metadata_from_json_ex(const char *text, const struct spool_kv *typed, size_t ntyped,
                               const char *block, struct spool_buf *out, size_t *count, char *err,
                               size_t errlen);

/* Packs the client block of mlog_client_set_block(): the msgpack string
 * `name` and the JSON object `json` as a map (converted as metadata_json
 * is), appended to *out as one key/value pair.  -EINVAL with a sentence in
 * err for an empty, invalid UTF-8 or reserved name (c_client, delivery),
 * JSON that is not one object, or nesting too deep; -ENOMEM. */
int mlog_block_from_json(const char *name, const char *json, struct spool_buf *out, char *err,
                         size_t errlen);

/* Checks typed metadata before it is encoded: every key set, valid UTF-8,
 * not reserved, not repeated; a known type; strings not NULL; doubles
 * finite.  0, or -EINVAL / -ENOMEM with a sentence naming the entry. */
int mlog_metadata_check(const struct spool_kv *kv, size_t n, char *err, size_t errlen);

#endif
