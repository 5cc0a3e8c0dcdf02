/* zorch — a run: its struct, its record (runs/<id>/run.json), and loading it
 * back from a store (run_record.c). */
#ifndef ZORCH_RUN_RECORD_H
#define ZORCH_RUN_RECORD_H

#include "client_int.h"
#include "executor.h"

struct zorch_run {
  zorch_client *client;
  char *id, *name, *pipeline, *stack, *orchestrator, *flavor_name;
  int status;
  double created, started, finished;
  char *message;
  zorch__kvs metadata;
  char *deployment;
  zorch__plan *plan;
  zorch__step_rec *recs;
  zorch__store *store;
  uint32_t flags;
  /* a run started by this process */
  const zorch__flavor *flavor;
  void *flavor_run;
  zorch_submission *sub;
  bool live, ended;
  atomic_int cancel_requested;
};

/** Write the run record (run.json, durably); a no-op for an ephemeral run. */
int zorch__run_record_write(zorch_run *r);
/** Read a run record's text into r's fields (those it names are replaced);
 *  `where` names it in messages. */
int zorch__run_record_parse(zorch_run *r, const char *text, const char *where);
/** Free what the run's fields hold (not r itself, not r->sub). */
void zorch__run_free_fields(zorch_run *r);
/** The run's deployment text: kept, made (an ephemeral run), or read back
 *  from the store; NULL when there is none. */
const char *zorch__run_deployment_text(zorch_run *r);
/** Load run `id` from the store `st`: its record, deployment, plan and step
 *  records.  On success the run owns `st`; on failure the caller still does. */
int zorch__run_load(zorch_run **out, zorch_client *c, zorch__store *st, const char *id);

#endif /* ZORCH_RUN_RECORD_H */
