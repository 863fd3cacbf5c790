/* ops.h — the operations of the model-based spool test (ops.c, crash.c). */
#ifndef MODEL_OPS_H
#define MODEL_OPS_H

#include "model.h"

/* ---- ops.c ---- */
bool ops_full_error(int rc);
uint32_t ops_pick_pad(struct model *m);
enum spool_durability ops_pick_mode(struct model *m);
void ops_options(struct model *m, struct spool_options *o, enum spool_durability mode, bool limits);
bool ops_open(struct model *m, enum spool_durability mode);
bool ops_ensure(struct model *m);
void ops_handle_closed(struct model *m, int src, int rc);
/* Closes the test's handle, if any, and brings the model along; returns
 * spool_close's result. */
int ops_close_current(struct model *m);
void ops_rings_recovered(struct model *m);
size_t ops_pick_pending(struct model *m, size_t k, uint64_t *seqs, uint64_t *ns);
uint64_t ops_bogus_seq(struct model *m);

int ops_do_append(struct model *m, size_t n, const int *sev, const uint32_t *pad, bool many);
void op_append(struct model *m, bool many);
void op_bad_input(struct model *m);
void op_ack(struct model *m, bool discard);
void op_settle(struct model *m);
void op_dead_letter(struct model *m);
void op_dead_retry(struct model *m, bool purge);
void op_read(struct model *m);
void op_read_dead(struct model *m);
void op_sync(struct model *m);
void op_reopen(struct model *m);

/* ---- crash.c ---- */
void op_kill(struct model *m);
void op_full_on(struct model *m);
void op_full_off(struct model *m);

#endif
