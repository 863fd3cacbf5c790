/* bad_abi.c — a transport built for ABI version 1 (the HTTP-shaped ABI
 * before include/spool/transport.h's version 2): the loader must refuse it,
 * naming the file and both versions, before it reads any other field. */
#include <spool/transport.h>

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
    .abi_version = 1,
    .struct_size = sizeof(struct spool_transport),
    .name = "bad_abi",
};
