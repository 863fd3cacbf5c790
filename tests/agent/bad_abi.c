/* bad_abi.c — a transport built for another ABI version: the loader must
 * refuse it, naming the file. */
#include <spool/transport.h>

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
	.abi_version = SPOOL_TRANSPORT_ABI + 98,
	.struct_size = sizeof(struct spool_transport),
	.name = "bad_abi",
};
